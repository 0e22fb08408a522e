/**
 * `fetch` through the gateway: undici's fetch with a gateway dispatcher, a refusal thrown as
 * its typed error (not "fetch failed"), and the refusals a new exit may cure
 * (`no_exit_available`, `exit_failed`, `target_timeout`, and `service_unavailable`, a
 * passing outage of the gateway's own services) retried with back-off when no
 * session pins the exit: each retry is a new connection or forwarded request, which the
 * gateway gives any matching exit.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { type Dispatcher, type RequestInit, type Response, fetch as undiciFetch } from 'undici';
import type { ErrorCode, IPColaError } from '../errors.ts';
import { gatewayRefusal } from './refusal.ts';

export interface RetryOptions {
  /** Retries after the first attempt; default 2. */
  retries?: number;
  /** The first back-off in ms, doubled each time with jitter; default 200. */
  backoffMs?: number;
  /** The most one back-off waits, whatever Retry-After says; default 2000. */
  maxBackoffMs?: number;
}

const RETRIED: ReadonlySet<IPColaError['code']> = new Set<ErrorCode>([
  'no_exit_available',
  'exit_failed',
  'target_timeout',
  // The gateway lost its database or hot state for a moment: the same request may pass.
  'service_unavailable',
]);

/**
 * One fetch through `dispatcher()`, retried per `retry` unless `pinned` (a session: another
 * attempt would go to the same exit, or be refused as `session_exit_gone`).
 */
export async function fetchThrough(
  dispatcher: () => Dispatcher,
  url: string | URL,
  init: RequestInit,
  pinned: boolean,
  retry: RetryOptions = {},
): Promise<Response> {
  const retries = pinned || !replayable(init.body) ? 0 : (retry.retries ?? 2);
  const backoffMs = retry.backoffMs ?? 200;
  const maxBackoffMs = retry.maxBackoffMs ?? 2000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await undiciFetch(url, { ...init, dispatcher: dispatcher() });
    } catch (error) {
      const refusal = gatewayRefusal(error);
      if (refusal === undefined) throw error;
      if (attempt >= retries || !RETRIED.has(refusal.code) || init.signal?.aborted) {
        throw withAttempts(refusal, attempt + 1);
      }
      const wanted = Math.max(backoffMs * 2 ** attempt, (refusal.retryAfter ?? 0) * 1000);
      // Full jitter on the upper half: callers retrying together spread out.
      const wait = Math.min(maxBackoffMs, wanted) * (0.5 + Math.random() / 2);
      await delay(wait, undefined, init.signal ? { signal: init.signal } : undefined);
    }
  }
}

// Streams cannot be sent twice; everything else fetch accepts as a body can.
function replayable(body: RequestInit['body']): boolean {
  if (body === undefined || body === null) return true;
  return !(
    typeof (body as ReadableStream).getReader === 'function' ||
    typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
  );
}

function withAttempts(error: IPColaError, attempts: number): IPColaError {
  if (attempts > 1) error.message = `${error.message} (after ${attempts} attempts)`;
  return error;
}
