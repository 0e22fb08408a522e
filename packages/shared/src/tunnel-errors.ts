/**
 * The tunnel half of the product's error catalogue: the refusals an exit answers a stream
 * with, and how each edge shows them. The server's catalogue (server/src/errors) spreads
 * these entries into its own, so the agent and the gateway read one table.
 */

/** RFC 9209 Proxy-Status error types the product uses. */
export type ProxyStatusType =
  | 'http_request_denied'
  | 'http_request_error'
  | 'destination_ip_prohibited'
  | 'destination_unavailable'
  | 'destination_not_found'
  | 'dns_error'
  | 'connection_refused'
  | 'connection_limit_reached'
  | 'connection_timeout'
  | 'connection_terminated'
  | 'proxy_internal_error';

/**
 * SOCKS5: 'auth' is a failed RFC 1929 sub-negotiation; 'close' is no reply, the connection is
 * closed (a handshake that ran out of time); a number is the RFC 1928 REP field.
 */
export type SocksReply = 'auth' | 'close' | 0x01 | 0x02 | 0x03 | 0x04 | 0x05 | 0x07 | 0x08;

/** One refusal as every edge shows it: HTTP status, SOCKS reply, Proxy-Status type. */
export interface ProxyCodeSpec {
  readonly status: number;
  readonly socks: SocksReply;
  readonly proxyStatus: ProxyStatusType;
  readonly retryable: boolean;
  readonly message: string;
}

export function proxyCodeSpec(
  status: number,
  socks: SocksReply,
  proxyStatus: ProxyStatusType,
  retryable: boolean,
  message: string,
): ProxyCodeSpec {
  return { status, socks, proxyStatus, retryable, message };
}

export const TUNNEL_ERRORS = {
  target_forbidden: proxyCodeSpec(
    403,
    0x02,
    'destination_ip_prohibited',
    false,
    'The target is not allowed',
  ),
  target_unreachable: proxyCodeSpec(
    502,
    0x04,
    'destination_unavailable',
    false,
    'The target could not be reached',
  ),
  target_timeout: proxyCodeSpec(
    504,
    0x04,
    'connection_timeout',
    false,
    'The target did not answer in time',
  ),
  exit_failed: proxyCodeSpec(
    502,
    0x01,
    'connection_terminated',
    true,
    'The exit node dropped the connection',
  ),
} as const satisfies Record<string, ProxyCodeSpec>;

export type TunnelErrorCode = keyof typeof TUNNEL_ERRORS;

export const TUNNEL_ERROR_CODES = Object.keys(TUNNEL_ERRORS) as readonly TunnelErrorCode[];

/** A tunnel failure as a value: callers branch on `code`, never on the message. */
export class TunnelError extends Error {
  readonly code: TunnelErrorCode;
  constructor(code: TunnelErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? code, options);
    this.name = 'TunnelError';
    this.code = code;
  }
}

export function tunnelError(
  code: TunnelErrorCode,
  message?: string,
  options?: { cause?: unknown },
): TunnelError {
  return new TunnelError(code, message, options);
}

export function isTunnelErrorCode(value: unknown): value is TunnelErrorCode {
  return typeof value === 'string' && Object.hasOwn(TUNNEL_ERRORS, value);
}

export function isTunnelError(value: unknown): value is TunnelError {
  return value instanceof TunnelError;
}

/** The :status an agent answers a refused CONNECT stream with (the catalogue's HTTP status). */
export function tunnelStatusOf(code: TunnelErrorCode): number {
  return TUNNEL_ERRORS[code].status;
}

/**
 * The tunnel code an error value carries, or `exit_failed` when it carries none:
 * egress code may throw its own error classes, and anything unexpected at the exit
 * is, from the customer's side, the exit failing.
 */
export function tunnelCodeOf(error: unknown): TunnelErrorCode {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const { code } = error;
    if (isTunnelErrorCode(code)) return code;
  }
  return 'exit_failed';
}
