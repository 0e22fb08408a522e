/**
 * Sign-ups per client address and hour, over rate-limiter-flexible (in-process or Redis,
 * whichever hot state runs, so the count is shared by every server). Every account
 * starts with the trial credit: without a limit one address made 35 accounts, 1 GiB
 * each, in 4 s.
 */
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { consumePoint } from '../auth-failures/index.ts';
import type { HotState } from '../store/index.ts';

export interface SignupLimit {
  /** Counts one sign-up from the address; resolves with the ms until it may sign up again when over the limit, else 0. */
  take(address: string): Promise<number>;
}

export interface SignupLimitOptions {
  limiter: RateLimiterAbstract;
  /** A store that does not answer (Redis down): the sign-up goes ahead, reported here. */
  onError?: (error: unknown) => void;
}

export function createSignupLimit(options: SignupLimitOptions): SignupLimit {
  return {
    take: (address) => consumePoint(options.limiter, address, options.onError),
  };
}

/** Sign-ups per address and hour, counted in hot state. */
export function signupsPerHour(
  hotState: Pick<HotState, 'rateLimiter'>,
  options: { perHour: number; onError: (error: unknown) => void },
): SignupLimit {
  return createSignupLimit({
    limiter: hotState.rateLimiter({ name: 'signups', points: options.perHour, durationSec: 3600 }),
    onError: options.onError,
  });
}
