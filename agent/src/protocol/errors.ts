/**
 * The refusals an exit node can answer a stream with. The strings are codes of the
 * product's error catalogue (server/src/errors); they are repeated here, not imported,
 * because the agent ships without the server.
 */

export const TUNNEL_ERROR_CODES = [
  'target_forbidden',
  'target_unreachable',
  'target_timeout',
  'exit_failed',
] as const;

export type TunnelErrorCode = (typeof TUNNEL_ERROR_CODES)[number];

/** The :status an agent answers a refused CONNECT stream with (the catalogue's HTTP status). */
export const TUNNEL_ERROR_STATUS: Readonly<Record<TunnelErrorCode, number>> = {
  target_forbidden: 403,
  target_unreachable: 502,
  target_timeout: 504,
  exit_failed: 502,
};

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
  return typeof value === 'string' && (TUNNEL_ERROR_CODES as readonly string[]).includes(value);
}

export function isTunnelError(value: unknown): value is TunnelError {
  return value instanceof TunnelError;
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
