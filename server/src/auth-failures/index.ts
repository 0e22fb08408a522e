/**
 * Failed sign-ins per client address, over rate-limiter-flexible (in-process or Redis,
 * whichever hot state runs): past the allowance the address is refused outright for the
 * block duration, correct credentials or not, so that guessing stays slow and cheap.
 *
 * Only failures reach the limiter's store; whether an address is blocked is answered
 * from what this process learnt, so that a successful sign-in never waits for Redis: a
 * block it counted itself, or one another instance counted and broadcast. Without the
 * broadcast, an instance that never saw the address fail would judge a right secret
 * from a blocked address until its own next failure there (a guess per instance and
 * block).
 */
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RateLimiterRes } from 'rate-limiter-flexible';
import type { Broadcast, HotState } from '../store/index.ts';

export interface AuthFailureLimit {
  /** Milliseconds the address stays blocked, 0 when it is not blocked. */
  blockedFor(address: string): number;
  /** Counts one failure; resolves with how long the address is now blocked (0: not). */
  recordFailure(address: string): Promise<number>;
}

export interface AuthFailureLimitOptions {
  limiter: RateLimiterAbstract;
  /** Where blocks are told to the other instances, and theirs heard (one topic per limit). */
  blocks?: { broadcast: Broadcast; topic: string };
  /** A store that does not answer (Redis down): counted as no block, reported here. */
  onError?: (error: unknown) => void;
  now?: () => number;
}

/** Blocked addresses are remembered this many at most (a flood of addresses cannot grow memory). */
const MAX_REMEMBERED = 100_000;

export function createAuthFailureLimit(options: AuthFailureLimitOptions): AuthFailureLimit {
  const now = options.now ?? Date.now;
  const blockedUntil = new Map<string, number>();
  const block = (address: string, ms: number) => {
    if (blockedUntil.size >= MAX_REMEMBERED) blockedUntil.clear();
    blockedUntil.set(address, Math.max(blockedUntil.get(address) ?? 0, now() + ms));
  };
  const { blocks } = options;
  // For as long as the hot state runs: its close ends the subscription.
  blocks?.broadcast.subscribe(blocks.topic, (message) => {
    const told = parseBlock(message);
    if (told) block(told.address, told.ms);
  });

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
        const known = blockedFor(address) > 0;
        block(address, blocked);
        // Relative, not a time: the instances' clocks need not agree.
        if (!known && blocks) {
          const message = JSON.stringify({ address, ms: blocked } satisfies Block);
          blocks.broadcast.publish(blocks.topic, message).catch(options.onError ?? (() => {}));
        }
      }
      return blocked;
    },
  };
}

/** How long an address that used up its failed sign-ins is refused. */
const AUTH_FAILURE_BLOCK_SECONDS = 300;

/** A block another instance counted: the address, and the milliseconds it has left. */
interface Block {
  address: string;
  ms: number;
}

/** A block as broadcast, or null for anything else (the topic is ours, but checked all the same). */
function parseBlock(message: string): Block | null {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return null;
  }
  const { address, ms } = (value ?? {}) as Partial<Block>;
  if (typeof address !== 'string' || address.length === 0 || address.length > 64) return null;
  if (typeof ms !== 'number' || !(ms > 0 && ms <= AUTH_FAILURE_BLOCK_SECONDS * 1000)) return null;
  return { address, ms };
}

/**
 * Limits of failed sign-ins per address and minute, counted in hot state (shared by every
 * server), one limit per name; past the allowance an address is refused for a while,
 * whatever it presents.
 */
export function authFailureLimits(
  hotState: Pick<HotState, 'rateLimiter' | 'broadcast'>,
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
      blocks: { broadcast: hotState.broadcast, topic: `blocked:${name}` },
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
