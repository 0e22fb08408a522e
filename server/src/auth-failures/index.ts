/**
 * Failed sign-ins per client address, over rate-limiter-flexible (in-process or Redis,
 * whichever hot state runs): past the allowance the address is refused outright for the
 * block duration, correct credentials or not, so that guessing stays slow and cheap.
 *
 * Only failures reach the limiter's store; whether an address is blocked is answered
 * from what this process learnt when it counted a failure, so that a successful
 * sign-in never waits for Redis.
 */
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RateLimiterRes } from 'rate-limiter-flexible';
import type { HotState } from '../store/index.ts';

export interface AuthFailureLimit {
  /** Milliseconds the address stays blocked, 0 when it is not blocked. */
  blockedFor(address: string): number;
  /** Counts one failure; resolves with how long the address is now blocked (0: not). */
  recordFailure(address: string): Promise<number>;
}

export interface AuthFailureLimitOptions {
  limiter: RateLimiterAbstract;
  /** A store that does not answer (Redis down): counted as no block, reported here. */
  onError?: (error: unknown) => void;
  now?: () => number;
}

/** Blocked addresses are remembered this many at most (a flood of addresses cannot grow memory). */
const MAX_REMEMBERED = 100_000;

export function createAuthFailureLimit(options: AuthFailureLimitOptions): AuthFailureLimit {
  const now = options.now ?? Date.now;
  const blockedUntil = new Map<string, number>();

  const blockedFor = (address: string): number => {
    const until = blockedUntil.get(address);
    if (until === undefined) return 0;
    const left = until - now();
    if (left > 0) return left;
    blockedUntil.delete(address);
    return 0;
  };

  return {
    blockedFor,
    async recordFailure(address) {
      const blocked = await consumePoint(options.limiter, address, options.onError);
      if (blocked > 0) {
        if (blockedUntil.size >= MAX_REMEMBERED) blockedUntil.clear();
        blockedUntil.set(address, now() + blocked);
      }
      return blocked;
    },
  };
}

/** How long an address that used up its failed sign-ins is refused. */
const AUTH_FAILURE_BLOCK_SECONDS = 300;

/**
 * Limits of failed sign-ins per address and minute, counted in hot state (shared by every
 * server), one limit per name; past the allowance an address is refused for a while,
 * whatever it presents.
 */
export function authFailureLimits(
  hotState: Pick<HotState, 'rateLimiter'>,
  options: { perMinute: number; onError: (error: unknown) => void },
): (name: string) => AuthFailureLimit {
  return (name) =>
    createAuthFailureLimit({
      limiter: hotState.rateLimiter({
        name,
        points: options.perMinute,
        durationSec: 60,
        blockDurationSec: AUTH_FAILURE_BLOCK_SECONDS,
      }),
      onError: options.onError,
    });
}

/**
 * Takes one point of the address's allowance: 0 while it has points, else the
 * milliseconds (at least 1) until it has one again. A store that does not answer counts
 * as a point taken (reported to onError): limits never lock everyone out.
 */
export async function consumePoint(
  limiter: RateLimiterAbstract,
  address: string,
  onError?: (error: unknown) => void,
): Promise<number> {
  try {
    await limiter.consume(address);
    return 0;
  } catch (rejection) {
    if (!(rejection instanceof RateLimiterRes)) {
      onError?.(rejection);
      return 0;
    }
    return Math.max(1, rejection.msBeforeNext);
  }
}
