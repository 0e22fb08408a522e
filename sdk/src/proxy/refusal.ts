/**
 * A gateway refusal (README, "Proxy errors") as a typed error: the code from `X-IPCola-Error`,
 * else from the RFC 9209 `Proxy-Status` details, else from the status alone (a proxy in
 * between that dropped the headers), with the status and `Retry-After` kept.
 */
import { type ErrorCode, errorFor, IPColaError, isErrorCode } from '../errors.ts';

type Headers = Record<string, string | string[] | undefined>;

// The gateway's statuses, for a refusal whose headers did not survive the way back.
const CODE_OF_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: 'bad_params',
  402: 'quota_exhausted',
  403: 'target_forbidden',
  407: 'auth_failed',
  408: 'request_timeout',
  429: 'rate_limited',
  502: 'exit_failed',
  503: 'no_exit_available',
  504: 'target_timeout',
};

const ADVICE: Partial<Record<ErrorCode, string>> = {
  session_exit_gone:
    "the sticky session's exit went offline: rotate the session (session.rotate()) for a new exit",
  no_exit_available: 'no online exit matches the targeting',
  service_unavailable:
    'the gateway cannot reach its database or hot state right now: retry after Retry-After',
  quota_exhausted: "the key's monthly cap or the account's balance is used up",
  auth_failed: 'the key id or secret is wrong, or the key is revoked or disabled',
};

// The gateway's half of the catalogue (README, "Proxy errors"): an answer naming any other
// code is not the gateway's refusal.
const GATEWAY_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'auth_required',
  'auth_failed',
  'bad_params',
  'ip_not_allowed',
  'target_forbidden',
  'quota_exhausted',
  'rate_limited',
  'no_exit_available',
  'session_exit_gone',
  'service_unavailable',
  'target_unreachable',
  'target_timeout',
  'exit_failed',
  'request_timeout',
]);

/**
 * The code a gateway answer names, or undefined when it names none: `X-IPCola-Error`, or
 * the `details` of the `ipcola` member of `Proxy-Status` (a CDN's member is not ours).
 */
export function namedCode(headers: Headers): ErrorCode | undefined {
  const named = first(headers['x-ipcola-error'])?.trim();
  if (isGatewayCode(named)) return named;
  const status = first(headers['proxy-status']) ?? '';
  const ours = status.split(',').find((member) => member.trim().startsWith('ipcola;'));
  const details = /details="([a-z_]+)"/.exec(ours ?? '')?.[1];
  return isGatewayCode(details) ? details : undefined;
}

function isGatewayCode(value: unknown): value is ErrorCode {
  return isErrorCode(value) && GATEWAY_CODES.has(value);
}

/** The typed error for a refused request or CONNECT to `target`. */
export function refusalError(
  status: number,
  headers: Headers,
  target: string,
  how: 'CONNECT' | 'request',
): IPColaError {
  const code = namedCode(headers) ?? CODE_OF_STATUS[status] ?? 'exit_failed';
  const advice = ADVICE[code];
  return errorFor(
    code,
    `the IPCola gateway refused the ${how} to ${target} with ${status} ${code}${advice ? `: ${advice}` : ''}`,
    { status, retryAfter: retryAfter(first(headers['retry-after'])) },
  );
}

/**
 * The gateway's refusal in what a client threw: the IPColaError inside fetch's
 * `fetch failed` (cause → cause ...), or the refused answer an axios or got error carries as
 * its `response` (the agents hand a refused CONNECT to the client as that response).
 */
export function gatewayRefusal(error: unknown): IPColaError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== null && typeof current === 'object'; depth++) {
    if (current instanceof IPColaError) return current;
    const refused = refusalInResponse((current as { response?: unknown }).response);
    if (refused !== undefined) return refused;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** A client's response object (axios: `status`, got: `statusCode`), when the gateway refused. */
function refusalInResponse(response: unknown): IPColaError | undefined {
  if (response === null || typeof response !== 'object') return undefined;
  const { status, statusCode, headers, url, requestUrl, config } = response as {
    status?: unknown;
    statusCode?: unknown;
    headers?: unknown;
    url?: unknown;
    requestUrl?: unknown;
    config?: { url?: unknown };
  };
  const code = typeof status === 'number' ? status : statusCode;
  if (typeof code !== 'number' || headers === null || typeof headers !== 'object') return undefined;
  // axios's AxiosHeaders and got's plain object both answer lowercase property reads.
  const plain = { ...(headers as Record<string, string | string[] | undefined>) };
  if (namedCode(plain) === undefined) return undefined;
  const target = String(url ?? requestUrl ?? config?.url ?? 'the target');
  return refusalError(code, plain, target, 'request');
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function retryAfter(value: string | undefined): number | undefined {
  if (value === undefined || !/^[0-9]{1,9}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}
