/**
 * The `fetch` every API call goes through: one attempt after another under the retry
 * policy, each with its own timeout, the caller's AbortSignal honoured throughout, and a
 * typed error for whatever is not a success in the end. The request is cloned for each
 * attempt, so its headers (the Idempotency-Key among them) are the same every time.
 */
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  type ErrorCode,
  errorFor,
  type IPColaError,
  isErrorCode,
} from '../errors.ts';
import { backoffMs, isRetryableStatus, MAX_RETRY_AFTER_MS, retryAfterMs } from './retry-policy.ts';

export interface TransportOptions {
  maxRetries: number;
  timeout: number;
  signal?: AbortSignal | undefined;
  fetch: typeof fetch;
  /** Statuses that are an answer, not an error (readiness answers 503 with its checks). */
  answerStatuses?: readonly number[] | undefined;
}

/** Status codes whose error bodies are not the API's JSON get the code the API would use. */
const CODE_OF_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'idempotency_conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  501: 'billing_disabled',
  503: 'not_ready',
};

type Attempt =
  | { ok: true; response: Response }
  | { ok: false; error: IPColaError; retryable: boolean; waitMs?: number | undefined };

export function transport(options: TransportOptions): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    let retry = 0;
    for (;;) {
      const attempt = await attemptOnce(request.clone(), options);
      if (attempt.ok) return attempt.response;
      if (!attempt.retryable || retry >= options.maxRetries) throw attempt.error;
      retry += 1;
      if (!(await waited(backoffMs(retry, attempt.waitMs), options.signal))) {
        throw new APIUserAbortError(undefined, { cause: options.signal?.reason });
      }
    }
  };
}

async function attemptOnce(request: Request, options: TransportOptions): Promise<Attempt> {
  if (options.signal?.aborted) {
    return {
      ok: false,
      error: new APIUserAbortError(undefined, { cause: options.signal.reason }),
      retryable: false,
    };
  }
  const timeout = AbortSignal.timeout(options.timeout);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let response: Response;
  let body: ArrayBuffer;
  try {
    response = await options.fetch(request, { signal });
    // Read within the same timeout, so a stalled body counts like a stalled answer.
    body = await response.arrayBuffer();
  } catch (cause) {
    if (options.signal?.aborted) {
      return {
        ok: false,
        error: new APIUserAbortError(undefined, { cause: options.signal.reason }),
        retryable: false,
      };
    }
    if (timeout.aborted) {
      return {
        ok: false,
        error: new APITimeoutError(
          `${request.method} ${request.url} got no answer within ${options.timeout} ms`,
          { cause },
        ),
        retryable: true,
      };
    }
    return {
      ok: false,
      error: new APIConnectionError(
        `${request.method} ${request.url} could not reach the API: ${describe(cause)}`,
        { cause },
      ),
      retryable: true,
    };
  }
  const buffered = new Response(response.status === 204 ? null : body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  if (response.ok || options.answerStatuses?.includes(response.status)) {
    return { ok: true, response: buffered };
  }
  const error = apiError(response, new TextDecoder().decode(body));
  const waitMs = retryAfterMs(response.headers.get('retry-after'));
  const retryable =
    isRetryableStatus(response.status, error.code) &&
    (waitMs === undefined || waitMs <= MAX_RETRY_AFTER_MS);
  return { ok: false, error, retryable, waitMs };
}

/** The typed error for a refusal: its code from the body, else the one its status implies. */
function apiError(response: Response, text: string): IPColaError {
  let code: ErrorCode | undefined;
  let message: string | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (isErrorCode(parsed.error?.code)) code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    // Not the API's JSON (a proxy in between, a crash page): the status speaks instead.
  }
  code ??=
    CODE_OF_STATUS[response.status] ??
    (response.status >= 500 ? 'internal_error' : 'invalid_request');
  const retryAfter = retryAfterMs(response.headers.get('retry-after'));
  return errorFor(code, message ?? `HTTP ${response.status} ${text.slice(0, 200)}`.trim(), {
    status: response.status,
    requestId: response.headers.get('x-request-id') ?? undefined,
    retryAfter: retryAfter === undefined ? undefined : Math.ceil(retryAfter / 1000),
  });
}

/**
 * Waits `ms` unless the signal aborts first (false then). Timers and AbortSignal only, so
 * the transport runs in browsers as well as Node (the portal uses it).
 */
function waited(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve(true);
    }, ms);
    const aborted = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code} ${cause.message ?? ''}`.trim();
  return error instanceof Error ? error.message : String(error);
}
