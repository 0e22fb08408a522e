/**
 * One error class per code of the API's `ErrorCode` list, for API answers and gateway
 * refusals alike, so a caller writes `catch (e) { if (e instanceof QuotaExhaustedError) ... }`
 * or switches on `e.code`; nothing is ever classified by message text. The table below is
 * checked against the generated type both ways: a code added to openapi.yaml without a class
 * here does not compile.
 */

import type { components } from '@ipcola/openapi';

export type ErrorCode = components['schemas']['ErrorCode'];

/**
 * Codes of failures the SDK meets before any answer: the API could not be reached, an
 * attempt ran out of time, or the caller aborted. They are not in the API's list since no
 * server ever sends them.
 */
export type ClientErrorCode = 'connection_error' | 'timeout' | 'aborted';

export interface IPColaErrorDetails {
  readonly status?: number | undefined;
  /** The API's `X-Request-Id`, to quote to support. */
  readonly requestId?: string | undefined;
  /** Seconds from the answer's `Retry-After`, when it had one. */
  readonly retryAfter?: number | undefined;
  readonly cause?: unknown;
}

export class IPColaError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode | ClientErrorCode,
    message: string,
    details: IPColaErrorDetails = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.status = details.status;
    this.requestId = details.requestId;
    this.retryAfter = details.retryAfter;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** The API could not be reached (refused, reset, DNS); retried before it is thrown. */
export class APIConnectionError extends IPColaError {
  declare readonly code: 'connection_error' | 'timeout';
  constructor(
    message: string,
    details: IPColaErrorDetails = {},
    code: 'connection_error' | 'timeout' = 'connection_error',
  ) {
    super(code, message, details);
  }
}

/** No answer within the request's `timeout`; retried before it is thrown. */
export class APITimeoutError extends APIConnectionError {
  declare readonly code: 'timeout';
  constructor(message: string, details: IPColaErrorDetails = {}) {
    super(message, details, 'timeout');
  }
}

/** The caller's `AbortSignal` fired; never retried. */
export class APIUserAbortError extends IPColaError {
  declare readonly code: 'aborted';
  constructor(message = 'The request was aborted', details: IPColaErrorDetails = {}) {
    super('aborted', message, details);
  }
}

const named = <N extends string>(name: N) =>
  ({
    [name]: class extends IPColaError {},
  })[name] as typeof IPColaError;

export const AuthRequiredError = named('AuthRequiredError');
export const AuthFailedError = named('AuthFailedError');
export const BadParamsError = named('BadParamsError');
export const IpNotAllowedError = named('IpNotAllowedError');
export const TargetForbiddenError = named('TargetForbiddenError');
export const QuotaExhaustedError = named('QuotaExhaustedError');
export const RateLimitedError = named('RateLimitedError');
export const NoExitAvailableError = named('NoExitAvailableError');
export const SessionExitGoneError = named('SessionExitGoneError');
export const ServiceUnavailableError = named('ServiceUnavailableError');
export const TargetUnreachableError = named('TargetUnreachableError');
export const TargetTimeoutError = named('TargetTimeoutError');
export const ExitFailedError = named('ExitFailedError');
export const RequestTimeoutError = named('RequestTimeoutError');
export const InvalidRequestError = named('InvalidRequestError');
export const UnauthorizedError = named('UnauthorizedError');
export const CsrfFailedError = named('CsrfFailedError');
export const ForbiddenError = named('ForbiddenError');
export const NotFoundError = named('NotFoundError');
export const MethodNotAllowedError = named('MethodNotAllowedError');
export const EmailTakenError = named('EmailTakenError');
export const PasswordlessCidrTakenError = named('PasswordlessCidrTakenError');
export const IdempotencyConflictError = named('IdempotencyConflictError');
export const PayoutAccountMissingError = named('PayoutAccountMissingError');
export const PayoutBelowMinimumError = named('PayoutBelowMinimumError');
export const PayoutExceedsAvailableError = named('PayoutExceedsAvailableError');
export const PayloadTooLargeError = named('PayloadTooLargeError');
export const UnsupportedMediaTypeError = named('UnsupportedMediaTypeError');
export const BillingDisabledError = named('BillingDisabledError');
export const NotReadyError = named('NotReadyError');
export const InternalError = named('InternalError');

const CLASS_OF = {
  auth_required: AuthRequiredError,
  auth_failed: AuthFailedError,
  bad_params: BadParamsError,
  ip_not_allowed: IpNotAllowedError,
  target_forbidden: TargetForbiddenError,
  quota_exhausted: QuotaExhaustedError,
  rate_limited: RateLimitedError,
  no_exit_available: NoExitAvailableError,
  session_exit_gone: SessionExitGoneError,
  service_unavailable: ServiceUnavailableError,
  target_unreachable: TargetUnreachableError,
  target_timeout: TargetTimeoutError,
  exit_failed: ExitFailedError,
  request_timeout: RequestTimeoutError,
  invalid_request: InvalidRequestError,
  unauthorized: UnauthorizedError,
  csrf_failed: CsrfFailedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  email_taken: EmailTakenError,
  passwordless_cidr_taken: PasswordlessCidrTakenError,
  idempotency_conflict: IdempotencyConflictError,
  payout_account_missing: PayoutAccountMissingError,
  payout_below_minimum: PayoutBelowMinimumError,
  payout_exceeds_available: PayoutExceedsAvailableError,
  payload_too_large: PayloadTooLargeError,
  unsupported_media_type: UnsupportedMediaTypeError,
  billing_disabled: BillingDisabledError,
  not_ready: NotReadyError,
  internal_error: InternalError,
} as const satisfies Record<ErrorCode, typeof IPColaError>;

/** Whether a string (a header, a JSON field) is one of the codes this SDK knows. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(CLASS_OF, value);
}

/** The typed error for a code: `errorFor('quota_exhausted', ...) instanceof QuotaExhaustedError`. */
export function errorFor(
  code: ErrorCode,
  message: string,
  details: IPColaErrorDetails = {},
): IPColaError {
  return new CLASS_OF[code](code, message, details);
}
