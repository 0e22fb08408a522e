/**
 * Whether a key may carry traffic right now: it has not been disabled, revoked or
 * rotated since it was verified, its rules still admit its open connections, and its
 * buckets are not overdrawn (a balance reduced or a cap lowered under open grants; what
 * a connection may move is bounded by its allowance, see allowance.ts, so this check
 * only has to cut what a lowered limit no longer covers).
 *
 * A check runs every intervalMs for each key with connections open here, cutting them
 * as soon as the verdict turns. A new connection is judged on a verdict at most two
 * intervals old, or waits for a fresh one.
 */
import type { KeyStanding } from '../accounts/index.ts';
import { type IPColaError, ipcolaError } from '../errors/index.ts';

export type Verdict = 'ok' | 'quota_exhausted' | 'revoked';

export interface SpendGuardOptions {
  /**
   * The keys' standing, and those of them that committed more than their limits (null
   * when that could not be read consistently this round).
   */
  judge(keyIds: readonly string[]): Promise<{ rows: KeyStanding[]; overdrawn: Set<string> | null }>;
  /** Keys with connections open on this gateway. */
  keysInUse(): string[];
  /**
   * Closes the key's open connections: all of them, or (`rotated`) those admitted before
   * its secret was replaced, at `admittedBefore` (epoch ms).
   */
  cut(keyId: string, reason: Exclude<Verdict, 'ok'> | 'rotated', admittedBefore?: number): void;
  /** Applies a usable key's current concurrency, countries and allow-list to its open connections. */
  enforce(
    keyId: string,
    rules: Pick<KeyStanding, 'maxConcurrency' | 'allowedCountries' | 'clientAllowlist'>,
  ): void;
  intervalMs: number;
  /**
   * How long after its last verdict a key is still admitted on it while its standing cannot
   * be read (PostgreSQL or Redis down); past it, or without one, new connections are refused
   * with service_unavailable. Open ones go on under their allowance (allowance.ts).
   */
  staleForMs?: number;
  /** Told each time a last verdict stands in for one that cannot be made. */
  onStale?: (error: unknown) => void;
  onError?: (error: unknown) => void;
  now?: () => number;
}

export interface SpendGuard {
  /** Throws quota_exhausted (no credit, cap reached) or auth_failed (revoked since verified). */
  admit(keyId: string): Promise<void>;
  /** One round of checks for the keys in use (the timer runs it every intervalMs). */
  check(): Promise<void>;
  close(): void;
}

/** Verdicts of keys no longer in use are forgotten after this long (or staleForMs, if longer). */
const FORGET_AFTER_MS = 60_000;

export function createSpendGuard(options: SpendGuardOptions): SpendGuard {
  const now = options.now ?? Date.now;
  const staleForMs = options.staleForMs ?? 0;
  const forgetAfterMs = Math.max(FORGET_AFTER_MS, staleForMs);
  const verdicts = new Map<
    string,
    {
      verdict: Verdict;
      at: number;
      usedAt: number;
      rotatedAt: number | null;
      rules: Pick<KeyStanding, 'maxConcurrency' | 'allowedCountries' | 'clientAllowlist'> | null;
    }
  >();
  let round: Promise<void> | undefined;
  const inFlight = new Map<string, Promise<void>>();

  const judge = async (keyIds: readonly string[]): Promise<void> => {
    if (keyIds.length === 0) return;
    const at = now();
    const { rows, overdrawn } = await options.judge(keyIds);
    const found = new Map(rows.map((row) => [row.keyId, row]));
    for (const keyId of keyIds) {
      const row = found.get(keyId);
      const previous = verdicts.get(keyId);
      // A round that could not read the allowances keeps the last word on them.
      const over =
        overdrawn === null ? previous?.verdict === 'quota_exhausted' : overdrawn.has(keyId);
      const verdict: Verdict = !row?.usable ? 'revoked' : over ? 'quota_exhausted' : 'ok';
      verdicts.set(keyId, {
        verdict,
        at,
        usedAt: previous?.usedAt ?? at,
        rotatedAt: row?.secretRotatedAt?.getTime() ?? null,
        rules: row
          ? {
              maxConcurrency: row.maxConcurrency,
              allowedCountries: row.allowedCountries,
              clientAllowlist: row.clientAllowlist,
            }
          : null,
      });
    }
  };

  const check = async (): Promise<void> => {
    const inUse = options.keysInUse();
    const at = now();
    for (const keyId of inUse) {
      const entry = verdicts.get(keyId);
      if (entry) entry.usedAt = at;
    }
    for (const [keyId, entry] of verdicts) {
      if (at - entry.usedAt > forgetAfterMs) verdicts.delete(keyId);
    }
    await judge(inUse);
    for (const keyId of inUse) {
      const entry = verdicts.get(keyId);
      if (!entry) continue;
      if (entry.verdict !== 'ok') {
        options.cut(keyId, entry.verdict);
        continue;
      }
      if (entry.rotatedAt !== null) options.cut(keyId, 'rotated', entry.rotatedAt);
      if (entry.rules) options.enforce(keyId, entry.rules);
    }
  };

  // One round at a time; a tick that finds one running skips.
  const timer = setInterval(() => {
    if (round) return;
    round = check()
      .catch((error: unknown) => options.onError?.(error))
      .finally(() => {
        round = undefined;
      });
  }, options.intervalMs);
  timer.unref();

  return {
    async admit(keyId) {
      let entry = verdicts.get(keyId);
      if (!entry || now() - entry.at > 2 * options.intervalMs) {
        // Connections of one key arriving together share one look at the database.
        let judging = inFlight.get(keyId);
        if (!judging) {
          judging = judge([keyId]).finally(() => inFlight.delete(keyId));
          inFlight.set(keyId, judging);
        }
        try {
          await judging;
        } catch (error) {
          // The standing cannot be read: the last verdict stands for a bounded time.
          if (!entry || now() - entry.at > staleForMs) {
            throw ipcolaError(
              'service_unavailable',
              "the key's standing cannot be read now: the database or hot state is unavailable",
              { cause: error },
            );
          }
          options.onStale?.(error);
        }
        entry = verdicts.get(keyId);
      }
      if (!entry) return;
      entry.usedAt = now();
      if (entry.verdict !== 'ok') throw refusal(entry.verdict);
    },
    check,
    close() {
      clearInterval(timer);
    },
  };
}

function refusal(verdict: Exclude<Verdict, 'ok'>): IPColaError {
  return verdict === 'revoked'
    ? ipcolaError('auth_failed', 'the key has been disabled or revoked')
    : ipcolaError('quota_exhausted');
}
