/**
 * Spend bounded in bytes: a connection moves bytes only out of an allowance it holds,
 * granted in chunks from what its key and account may still spend (the balance, and the
 * monthly cap minus this month's flushed usage, both from the database, minus what hot
 * state has committed: grants not returned and usage not flushed). The reservation is
 * atomic in hot state, so instances sharing Redis never grant the same bytes twice.
 *
 * When a chunk is used up the connection asks for the next one before it moves more;
 * none left, and it is cut. When it ends, what it did not use goes back, and what the
 * meter counted beyond its grants (bytes read from the client before they could be
 * checked, at most one socket read) is committed, so committed always covers the meter.
 *
 * The bound: with limits unchanged, a connection overshoots by less than one chunk of
 * data (a socket read, 64 KiB at most; the last grant's rest lets its last chunk through)
 * plus the bytes it read from the client before the gate refused (another 64 KiB) and
 * its request headers (16 KiB at most): under 144 KiB per connection. When a limit is
 * lowered or a balance reduced under open connections, each may also use the rest of the
 * grant it holds (at most chunkBytes) until the guard's next check cuts it, which it does
 * once the key or account has committed more than a chunk beyond the new limit.
 *
 * Bytes the gateway had handed to the kernel when a cut resets the connection are billed
 * (the meter counts what was written to the socket), though the reset discards what the
 * client had not received yet.
 */

import type { KeyStanding } from '../accounts/index.ts';
import { bytesFor, type PriceBook } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import { allowanceBuckets } from '../metering/index.ts';
import type { AllowanceLedger } from '../store/index.ts';

export interface AllowancesOptions {
  ledger: AllowanceLedger;
  standing(keyIds: readonly string[], monthStart: Date): Promise<KeyStanding[]>;
  /** Bytes asked for per grant while plenty is left; grants shrink near zero. */
  chunkBytes: number;
  /** Customer prices: the balance (money) is spent in bytes at the highest one for now. */
  prices: Pick<PriceBook, 'customerRate' | 'highestCustomerRate'>;
  /** How long a key's limits read from the database are reused (a flush also renews them). */
  limitsTtlMs: number;
  /** A return or charge that could not reach hot state, or limits the database did not give. */
  onError(error: unknown): void;
  now?: () => number;
}

export interface AllowanceOwner {
  id: string;
  accountId: string;
}

export interface Allowances {
  /** A connection's allowance holding its first grant; throws quota_exhausted when none is left. */
  open(key: AllowanceOwner): Promise<Allowance>;
  /**
   * Reads the keys' standing, and which of them have committed more than their limits
   * allow (a limit lowered, or the balance reduced, under open grants); overdrawn is null
   * when a flush ran meanwhile and the two readings cannot be compared.
   */
  judge(keyIds: readonly string[]): Promise<{ rows: KeyStanding[]; overdrawn: Set<string> | null }>;
}

/** Allowances without limits: for a gateway built without a ledger (tests of other parts). */
export function unlimitedAllowances(chunkBytes: number): Allowances {
  return {
    async open() {
      return new Allowance(
        [],
        async (want) => want,
        () => {},
        chunkBytes,
      );
    },
    judge: async () => ({ rows: [], overdrawn: null }),
  };
}

/** Grants never go below this while there is that much room: smaller ones cost more calls than they save. */
const MINIMUM_GRANT_BYTES = 16 * 1024;
/** A monthly cap that is not set. */
const UNLIMITED = Number.MAX_SAFE_INTEGER;
/** Epoch changes met in a row before a grant gives up (a flush moves it every few seconds). */
const RESERVE_ATTEMPTS = 4;

interface Limits {
  epoch: string;
  at: number;
  row: KeyStanding | undefined;
}

export function createAllowances(options: AllowancesOptions): Allowances {
  const { ledger } = options;
  const now = options.now ?? Date.now;
  const cache = new Map<string, Limits>();
  const reading = new Map<string, Promise<Limits>>();

  const readLimits = (keyId: string): Promise<Limits> => {
    let pending = reading.get(keyId);
    if (!pending) {
      pending = (async () => {
        // The epoch before the database: a flush between the two makes the reservation
        // come back null, so a debit is never missed by both the limit and committed.
        const epoch = await ledger.epoch();
        const at = now();
        const [row] = await options.standing([keyId], monthStart(at));
        const limits = { epoch, at, row };
        if (cache.size >= 10_000) cache.clear();
        cache.set(keyId, limits);
        return limits;
      })().finally(() => reading.delete(keyId));
      reading.set(keyId, pending);
    }
    return pending;
  };

  const limitsOf = async (keyId: string, fresh: boolean): Promise<Limits> => {
    const cached = cache.get(keyId);
    if (!fresh && cached && now() - cached.at < options.limitsTtlMs) return cached;
    try {
      return await readLimits(keyId);
    } catch (error) {
      // The database is down: open connections go on under the last limits it gave, at
      // the current epoch (no flush can commit while it is down, so none is missed but
      // one that committed just before), and committed still bounds what they move.
      if (!cached) throw error;
      options.onError(error);
      return { ...cached, epoch: await ledger.epoch() };
    }
  };

  const reserve = async (key: AllowanceOwner, want: number): Promise<number> => {
    const [accountBucket, keyBucket] = allowanceBuckets(key.id, key.accountId);
    for (let attempt = 0; attempt < RESERVE_ATTEMPTS; attempt++) {
      const { epoch, row } = await limitsOf(key.id, attempt > 0);
      if (!row?.usable) return 0;
      const granted = await ledger.reserve(
        [
          {
            id: accountBucket,
            limit: bytesFor(row.balanceMicro, options.prices.highestCustomerRate()),
          },
          {
            id: keyBucket,
            limit: row.monthlyByteCap === null ? UNLIMITED : row.monthlyByteCap - row.monthBytes,
          },
        ],
        want,
        MINIMUM_GRANT_BYTES,
        epoch,
      );
      if (granted !== null) return granted;
    }
    return 0;
  };

  return {
    async open(key) {
      const buckets = allowanceBuckets(key.id, key.accountId);
      const allowance = new Allowance(
        buckets,
        (want) =>
          reserve(key, want).catch((error: unknown) => {
            // No grant without hot state: the connection is refused or cut (see README).
            options.onError(error);
            throw error;
          }),
        (bytes) => {
          ledger.adjust(buckets, bytes).catch(options.onError);
        },
        options.chunkBytes,
      );
      if (!(await allowance.more())) {
        allowance.close();
        throw ipcolaError('quota_exhausted');
      }
      return allowance;
    },
    async judge(keyIds) {
      const quiet = await ledger.quietEpoch();
      const rows = await options.standing(keyIds, monthStart(now()));
      if (quiet === null || rows.length === 0) return { rows, overdrawn: null };
      const ids = rows.flatMap((row) => allowanceBuckets(row.keyId, row.accountId));
      const committed = await ledger.committed(ids);
      if ((await ledger.epoch()) !== quiet) return { rows, overdrawn: null };
      const overdrawn = new Set<string>();
      rows.forEach((row, i) => {
        const account = committed[2 * i] ?? 0;
        const key = committed[2 * i + 1] ?? 0;
        // Connections overdraw by up to a socket read each (their last chunk, bytes read
        // before a refusal): that is spend, bounded, not a lowered limit to cut for.
        const slack = options.chunkBytes;
        if (
          account > bytesFor(row.balanceMicro, options.prices.highestCustomerRate()) + slack ||
          (row.monthlyByteCap !== null && key > row.monthlyByteCap - row.monthBytes + slack)
        ) {
          overdrawn.add(row.keyId);
        }
      });
      return { rows, overdrawn };
    },
  };
}

/**
 * One connection's allowance. The splice (and the forwarder) take() every chunk before
 * writing it; the meter settles what the client socket really moved, headers included,
 * so that close() returns or charges the exact difference.
 */
export class Allowance {
  /** The hot-state buckets it was granted from (its account's and its key's). */
  readonly buckets: readonly string[];
  readonly #reserve: (want: number) => Promise<number>;
  readonly #commit: (bytes: number) => void;
  readonly #chunkBytes: number;
  #granted = 0;
  /** Bytes this connection is charged for: taken, corrected to the meter at each settle. */
  #spent = 0;
  /** Bytes taken since the meter last settled them. */
  #taken = 0;
  #asking: Promise<boolean> | null = null;
  #closed = false;

  constructor(
    buckets: readonly string[],
    reserve: (want: number) => Promise<number>,
    commit: (bytes: number) => void,
    chunkBytes: number,
  ) {
    this.buckets = buckets;
    this.#reserve = reserve;
    this.#commit = commit;
    this.#chunkBytes = chunkBytes;
  }

  /** Granted bytes not used yet. */
  get remaining(): number {
    return this.#granted - this.#spent;
  }

  /** Bytes taken since the meter last settled (a request's body or answer got under way). */
  get taken(): number {
    return this.#taken;
  }

  take(bytes: number): true | Promise<boolean> {
    if (this.#spent + bytes <= this.#granted) {
      this.#spent += bytes;
      this.#taken += bytes;
      // The next grant is asked for while a quarter of this one is left, so a busy
      // connection seldom pauses for it (a pause per chunk cost downloads about 20 %).
      if (this.#asking === null && this.#granted - this.#spent < this.#chunkBytes / 4) {
        void this.more();
      }
      return true;
    }
    return this.#takeLater(bytes);
  }

  /** Asks for the next grant (one request at a time); false when none is left. */
  more(): Promise<boolean> {
    this.#asking ??= this.#reserve(this.#chunkBytes)
      .then(
        (granted) => {
          if (this.#closed) {
            // Arrived after the connection ended: straight back.
            if (granted > 0) this.#commit(-granted);
            return false;
          }
          this.#granted += granted;
          return granted > 0;
        },
        () => false,
      )
      .finally(() => {
        this.#asking = null;
      });
    return this.#asking;
  }

  /** The meter counted `bytes` on the client socket since the last settle. */
  settle(bytes: number): void {
    this.#spent += bytes - this.#taken;
    this.#taken = 0;
  }

  /** Returns what was granted and not used, or commits what was used beyond the grants. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const difference = this.#spent - this.#granted;
    if (difference !== 0) this.#commit(difference);
  }

  async #takeLater(bytes: number): Promise<boolean> {
    while (this.#spent + bytes > this.#granted) {
      if (this.#closed) return false;
      if (!(await this.more())) {
        // The last grant covers part of this chunk: the chunk goes, overdrawing by less
        // than its size, so that the credit is used up to the byte and then refused.
        if (this.#granted - this.#spent > 0) break;
        return false;
      }
    }
    this.#spent += bytes;
    this.#taken += bytes;
    return true;
  }
}

/** The first instant of the UTC month: monthly caps reset then. */
export function monthStart(at: number): Date {
  const date = new Date(at);
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}
