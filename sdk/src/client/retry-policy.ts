/**
 * When to try a request again and how long to wait first: exponential back-off with full
 * jitter (a random wait between zero and the doubling cap), or the server's `Retry-After`
 * when it names a wait the caller can sit through.
 */

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 8_000;
/** A longer `Retry-After` is not waited for: the error reaches the caller with it. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** 501 means "not built here" (`billing_disabled`): asking again cannot change it. */
export function isRetryableStatus(status: number, code: string | undefined): boolean {
  if (status === 408 || status === 429) return true;
  // The first attempt (timed out on our side) may still hold the key on the server.
  if (status === 409) return code === 'idempotency_conflict';
  return status >= 500 && status !== 501;
}

/** `Retry-After` in milliseconds (seconds or an HTTP date), or undefined without a usable one. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The wait before retry number `retry` (1 for the first retry). */
export function backoffMs(retry: number, retryAfter: number | undefined): number {
  if (retryAfter !== undefined) return retryAfter;
  const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (retry - 1));
  return Math.random() * cap;
}
