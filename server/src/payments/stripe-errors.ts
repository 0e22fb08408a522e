/**
 * What a Stripe error means for the request that met it: Stripe unavailable for now (retry
 * later, the outcome of a write is unknown), or Stripe refusing it (nothing was done).
 */
import Stripe from 'stripe';
import { ipcolaError } from '../errors/index.ts';

/** Stripe down, slow or refusing for now: the customer may retry (the answer is not kept). */
export function stripeUnavailable(error: unknown) {
  const passing =
    error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    error instanceof Stripe.errors.StripeRateLimitError;
  return passing
    ? ipcolaError('not_ready', 'Stripe did not answer; try again', { cause: error })
    : undefined;
}

/**
 * Stripe answered that it did not do the request (a 4xx other than a conflict or a rate
 * limit): safe to undo what was booked for it. Anything else may have been done.
 */
export function stripeRefused(error: unknown): error is Stripe.errors.StripeError {
  if (!(error instanceof Stripe.errors.StripeError)) return false;
  if (error instanceof Stripe.errors.StripeIdempotencyError) return false;
  const status = error.statusCode;
  return status !== undefined && status >= 400 && status < 500 && status !== 409 && status !== 429;
}
