/**
 * One attempt at a delivery: the URL's host resolved and checked (target.ts), then one
 * POST to that checked address only. undici's connector is given a lookup that answers
 * with the checked address, so the socket cannot go where a second DNS answer points;
 * the TLS name and the Host header are still the URL's. Redirects are not followed (a
 * 3xx is a failed attempt), the answer's body is read and dropped, and the whole attempt,
 * DNS included, has one deadline.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { Agent, request } from 'undici';
import { SIGNATURE_HEADER, signatureHeader } from './signature.ts';
import { resolveDelivery, type TargetRules } from './target.ts';

export const USER_AGENT = 'IPCola-Webhooks/1';
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Why an attempt got no HTTP status. */
export type AttemptError =
  | 'target_forbidden'
  | 'target_unreachable'
  | 'timeout'
  | 'connection_refused'
  | 'tls_error'
  | 'connection_error';

export type SendResult =
  | { statusCode: number; error: null }
  | { statusCode: null; error: AttemptError; reason: string }
  /** The server is stopping: the attempt did not count. */
  | { aborted: true };

export interface SendRequest {
  url: string;
  payload: string;
  secret: string;
  /** Unix seconds the signature carries. */
  timestamp: number;
}

export async function send(
  delivery: SendRequest,
  rules: TargetRules,
  timeoutMs: number,
  stopping: AbortSignal,
): Promise<SendResult> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([deadline, stopping]);
  const url = new URL(delivery.url);
  let target: Awaited<ReturnType<typeof resolveDelivery>>;
  try {
    target = await untilAborted(resolveDelivery(url, rules), signal);
  } catch {
    return stopping.aborted
      ? { aborted: true }
      : failed('timeout', 'resolving the host took too long');
  }
  if (!target.ok) return failed(target.error, target.reason);

  const agent = new Agent({
    connect: { lookup: pinnedLookup(target.address), timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    pipelining: 0,
  });
  try {
    const answer = await request(url, {
      method: 'POST',
      dispatcher: agent,
      signal,
      headers: {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        [SIGNATURE_HEADER.toLowerCase()]: signatureHeader(
          delivery.secret,
          delivery.payload,
          delivery.timestamp,
        ),
      },
      body: delivery.payload,
    });
    // Only the status counts; a long answer is cut rather than read.
    await answer.body.dump({ limit: 64 * 1024, signal });
    return { statusCode: answer.statusCode, error: null };
  } catch (error) {
    if (stopping.aborted) return { aborted: true };
    if (deadline.aborted) return failed('timeout', `no answer within ${timeoutMs} ms`);
    return failed(attemptError(error), String((error as Error)?.message ?? error));
  } finally {
    agent.destroy().catch(() => {});
  }
}

function failed(error: AttemptError, reason: string): SendResult {
  return { statusCode: null, error, reason };
}

/** net.connect's lookup, answering every query with the one checked address. */
function pinnedLookup(address: string) {
  const family = isIP(address);
  return (
    _hostname: string,
    options: LookupOptions,
    callback: (
      error: NodeJS.ErrnoException | null,
      address: string | LookupAddress[],
      family?: number,
    ) => void,
  ) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);

function attemptError(error: unknown): AttemptError {
  const code = String((error as { code?: unknown })?.code ?? '');
  if (TIMEOUT_CODES.has(code)) return 'timeout';
  if (code === 'ECONNREFUSED') return 'connection_refused';
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || code.includes('SSL')) {
    return 'tls_error';
  }
  return 'connection_error';
}
