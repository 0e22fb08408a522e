/**
 * The one catalogue of refusal codes (README "Proxy errors", and the API's codes in openapi/openapi.yaml).
 * Errors are values carrying a code; the HTTP, SOCKS and JSON edges map them,
 * nothing ever branches on a message. The codes an exit answers a stream with are the
 * tunnel half, kept in @ipcola/shared so the agent reads the same table.
 */

import {
  type ProxyCodeSpec,
  type ProxyStatusType,
  type SocksReply,
  proxyCodeSpec as spec,
  TUNNEL_ERRORS,
} from '@ipcola/shared/tunnel-errors';

export type { ProxyCodeSpec, ProxyStatusType, SocksReply };

interface ApiCodeSpec {
  readonly status: number;
  readonly message: string;
}

export const PROXY_ERRORS = {
  auth_required: spec(407, 'auth', 'http_request_denied', false, 'Proxy credentials are required'),
  auth_failed: spec(407, 'auth', 'http_request_denied', false, 'Proxy credentials were rejected'),
  bad_params: spec(400, 0x01, 'http_request_error', false, 'The username parameters are malformed'),
  ip_not_allowed: spec(
    403,
    0x02,
    'http_request_denied',
    false,
    "The client IP is outside the key's allow-list",
  ),
  quota_exhausted: spec(
    402,
    0x02,
    'http_request_denied',
    false,
    'The byte cap or balance is used up',
  ),
  rate_limited: spec(
    429,
    0x02,
    'connection_limit_reached',
    true,
    'Too many connections or requests',
  ),
  no_exit_available: spec(
    503,
    0x03,
    'destination_unavailable',
    true,
    'No online exit matches the targeting',
  ),
  session_exit_gone: spec(
    503,
    0x03,
    'destination_unavailable',
    false,
    "The sticky session's exit is offline",
  ),
  // PostgreSQL or Redis did not answer and the gateway cannot judge the connection safely
  // (README, "When PostgreSQL or Redis is down"): not the customer's fault, and not a
  // verdict on the key or its credit, which quota_exhausted or auth_failed would claim.
  service_unavailable: spec(
    503,
    0x01,
    'proxy_internal_error',
    true,
    'The gateway cannot reach its database or hot state; retry shortly',
  ),
  ...TUNNEL_ERRORS,
  // RFC 9209 has no type for a client that is too slow; http_request_error is the one for a
  // client (4xx) error the intermediary answers itself, which this is (not a denial, nor a
  // timeout towards the next hop, which is what the connection_*_timeout types describe).
  request_timeout: spec(
    408,
    'close',
    'http_request_error',
    false,
    'The client did not finish its request or handshake in time',
  ),
} as const satisfies Record<string, ProxyCodeSpec>;

export const API_ERRORS = {
  invalid_request: api(400, 'The request is malformed'),
  unauthorized: api(401, 'Authentication is required'),
  csrf_failed: api(403, 'The X-CSRF-Token header is missing or does not match the session'),
  forbidden: api(403, 'The credentials do not allow this'),
  not_found: api(404, 'No such resource'),
  method_not_allowed: api(405, 'Method not allowed'),
  email_taken: api(409, 'An account with this email already exists'),
  passwordless_cidr_taken: api(
    409,
    'A password-less range overlaps one that another key already has (any account)',
  ),
  idempotency_conflict: api(
    409,
    'The Idempotency-Key was used for a different request, or that request is still running',
  ),
  payout_account_missing: api(
    409,
    'No Stripe account is linked for payouts yet: POST /v1/payouts/account first',
  ),
  payout_below_minimum: api(409, 'The payout would be less than the minimum'),
  payout_exceeds_available: api(409, 'The payout is more than is available to pay out'),
  payload_too_large: api(413, 'The request body is too large'),
  unsupported_media_type: api(415, 'The request body must be JSON'),
  billing_disabled: api(501, 'Card payments are not configured on this server'),
  not_ready: api(503, 'A dependency is unavailable'),
  internal_error: api(500, 'Internal error'),
} as const satisfies Record<string, ApiCodeSpec>;

export type ProxyErrorCode = keyof typeof PROXY_ERRORS;
export type ApiErrorCode = keyof typeof API_ERRORS;
export type ErrorCode = ProxyErrorCode | ApiErrorCode;

export interface IPColaErrorOptions {
  cause?: unknown;
  /** Seconds until a retry can succeed, when known (a block's time left): the edges' Retry-After. */
  retryAfterSeconds?: number;
}

/** An expected refusal: it has a code from the catalogue and an HTTP status. */
export class IPColaError extends Error {
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    options?: IPColaErrorOptions,
  ) {
    super(
      message ?? describe(code),
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'IPColaError';
    this.status = statusOf(code);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** The one factory every refusal goes through. */
export function ipcolaError(
  code: ErrorCode,
  message?: string,
  options?: IPColaErrorOptions,
): IPColaError {
  return new IPColaError(code, message, options);
}

export function isIPColaError(value: unknown): value is IPColaError {
  return value instanceof IPColaError;
}

export function isProxyErrorCode(code: string): code is ProxyErrorCode {
  return Object.hasOwn(PROXY_ERRORS, code);
}

export function proxySpec(code: ProxyErrorCode): ProxyCodeSpec {
  return PROXY_ERRORS[code];
}

function statusOf(code: ErrorCode): number {
  return isProxyErrorCode(code) ? PROXY_ERRORS[code].status : API_ERRORS[code].status;
}

function describe(code: ErrorCode): string {
  return isProxyErrorCode(code) ? PROXY_ERRORS[code].message : API_ERRORS[code].message;
}

function api(status: number, message: string): ApiCodeSpec {
  return { status, message };
}
