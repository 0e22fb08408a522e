/**
 * The portal's one way to the API: openapi-fetch typed by the OpenAPI document's `paths`
 * (no hand-written API types), with the cookie session's CSRF token on every mutation and
 * one place that hears of an expired session.
 */
import type { components, paths } from '@ipcola/openapi';
import createClient, { type Middleware } from 'openapi-fetch';

export type Schemas = components['schemas'];
export type Paths = paths;

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

let csrfToken: string | undefined;
let sessionExpired: (() => void) | undefined;

/** The token sign-up, log-in and GET /v1/me answer; sent as X-CSRF-Token from now on. */
export function setCsrfToken(token: string | undefined): void {
  csrfToken = token;
}

/** Called on any 401 outside the auth calls themselves: the session is gone. */
export function onSessionExpired(handler: () => void): void {
  sessionExpired = handler;
}

const session: Middleware = {
  onRequest({ request }) {
    if (csrfToken && MUTATIONS.has(request.method)) request.headers.set('X-CSRF-Token', csrfToken);
    return request;
  },
  onResponse({ request, response }) {
    const path = new URL(request.url).pathname;
    if (response.status === 401 && !path.startsWith('/v1/auth/') && path !== '/v1/me') {
      sessionExpired?.();
    }
    return response;
  },
};

export const api = createClient<paths>({
  baseUrl: globalThis.location?.origin ?? 'http://127.0.0.1:8080',
  credentials: 'same-origin',
});
api.use(session);

/** An error answer of the API, with its code from the document's ErrorCode list. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: Schemas['ErrorCode'] | 'network_error',
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

interface Answer<D> {
  data?: D;
  error?: unknown;
  response: Response;
}

/** The answer's data, or an ApiError for an error answer. */
export async function unwrap<D>(pending: Promise<Answer<D>>): Promise<D> {
  let answer: Answer<D>;
  try {
    answer = await pending;
  } catch {
    throw new ApiError(
      0,
      'network_error',
      'The server could not be reached. Check your connection.',
    );
  }
  const { data, error, response } = answer;
  if (response.ok) return data as D;
  const body = (error ?? {}) as Partial<Schemas['Error']>;
  const retryAfter = Number(response.headers.get('Retry-After'));
  throw new ApiError(
    response.status,
    body.error?.code ?? 'internal_error',
    body.error?.message ?? `The server answered ${response.status}`,
    Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
  );
}
