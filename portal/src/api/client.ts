/**
 * The portal's one way to the API: the SDK's typed client (`@ipcola/sdk/api`, openapi-fetch
 * typed by the OpenAPI document's `paths`, no hand-written API types) with its retries,
 * Idempotency-Keys and one error class per code; here with the cookie session's CSRF token
 * on every mutation and one place that hears of an expired session.
 */
import type { components, paths } from '@ipcola/openapi';
import {
  APIConnectionError,
  createApiClient,
  IPColaError,
  type Middleware,
  UnauthorizedError,
} from '@ipcola/sdk/api';

export type Schemas = components['schemas'];
export type Paths = paths;
/** Every refusal the API answers, typed by its code (the SDK's error classes). */
export { IPColaError as ApiError };

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
  onError({ request, error }) {
    const path = new URL(request.url).pathname;
    if (error instanceof UnauthorizedError && !path.startsWith('/v1/auth/') && path !== '/v1/me') {
      sessionExpired?.();
    }
    // Rethrown as it was: a typed error for the caller.
    return error instanceof Error ? error : new Error(String(error));
  },
};

export const api = createApiClient({
  apiUrl: globalThis.location?.origin ?? 'http://127.0.0.1:8080',
  credentials: 'same-origin',
  // A person is waiting: one quick retry, then say so.
  maxRetries: 1,
  timeout: 20_000,
});
api.use(session);

interface Answer<D> {
  data?: D;
}

/**
 * The answer's data. The SDK's transport throws the typed error of every refusal; a
 * server out of reach is said in words a person can act on.
 */
export async function unwrap<D>(pending: Promise<Answer<D>>): Promise<D> {
  try {
    return (await pending).data as D;
  } catch (error) {
    if (error instanceof APIConnectionError) {
      throw new APIConnectionError('The server could not be reached. Check your connection.', {
        cause: error,
      });
    }
    throw error;
  }
}
