/**
 * Whether a key may carry traffic right now: its account has credit left, its monthly
 * byte cap is not reached, and it has not been disabled or revoked since it was verified.
 *
 * The database knows balances and caps up to the last usage flush; the rest (counted,
 * not yet flushed) is in hot state and in this process. So every check adds those bytes,
 * and a check runs every intervalMs for each key with connections open here, cutting
 * them as soon as the verdict turns. A new connection is judged on a verdict at most
 * two intervals old, or waits for a fresh one.
 */
import type { KeyStanding } from '../accounts/index.ts';
import { type IPColaError, ipcolaError } from '../errors/index.ts';

export type Verdict = 'ok' | 'quota_exhausted' | 'revoked';

export interface SpendGuardOptions {
  standing(keyIds: readonly string[], monthStart: Date): Promise<KeyStanding[]>;
  /** Bytes per key counted but not in the database yet (hot state and this process). */
  unflushed(): Promise<Map<string, number>>;
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

/** Verdicts of keys no longer in use are forgotten after this long. */
const FORGET_AFTER_MS = 60_000;

export function createSpendGuard(options: SpendGuardOptions): SpendGuard {
  const now = options.now ?? Date.now;
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
    const unflushed = await options.unflushed();
    // An account's balance pays for all its keys: every key with unflushed bytes counts.
    const wanted = [...new Set([...keyIds, ...unflushed.keys()])];
    const rows = await options.standing(wanted, monthStart(at));
    const spentByAccount = new Map<string, number>();
    for (const row of rows) {
      const spent = unflushed.get(row.keyId) ?? 0;
      spentByAccount.set(row.accountId, (spentByAccount.get(row.accountId) ?? 0) + spent);
    }
    const found = new Map(rows.map((row) => [row.keyId, row]));
    for (const keyId of keyIds) {
      const row = found.get(keyId);
      const verdict: Verdict = !row?.usable
        ? 'revoked'
        : row.balanceBytes - (spentByAccount.get(row.accountId) ?? 0) <= 0 ||
            (row.monthlyByteCap !== null &&
              row.monthBytes + (unflushed.get(keyId) ?? 0) >= row.monthlyByteCap)
          ? 'quota_exhausted'
          : 'ok';
      const previous = verdicts.get(keyId);
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
      if (at - entry.usedAt > FORGET_AFTER_MS) verdicts.delete(keyId);
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
        await judging;
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

/** The first instant of the UTC month: monthly caps reset then. */
function monthStart(at: number): Date {
  const date = new Date(at);
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}
