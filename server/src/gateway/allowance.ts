/**
 * Spend bounded in bytes and money: a connection moves bytes only out of an allowance it
 * holds, granted in chunks from what its key and account may still spend (the balance,
 * and the monthly cap minus this month's flushed usage, both from the database, minus what
 * hot state has committed: grants not returned and usage not flushed). The reservation is
 * atomic in hot state, so instances sharing Redis never grant the same bytes twice.
 *
 * A grant is bytes, taken from the key's cap as bytes and from the account's balance as
 * money at the customer's price of the exit the connection uses: what the balance still
 * buys is more bytes through a cheap exit than through a dear one. Until the exit is
 * chosen (the first grant comes before, so that a broke customer is refused before an
 * exit is dialled) the price is the highest of any exit; once it is, what the grant
 * holds at the dearer price goes back. A keep-alive connection forwarding through
 * different exits is priced per request.
 *
 * When a chunk is used up the connection asks for the next one before it moves more;
 * none left, and it is cut. When it ends, what it did not use goes back, and what the
 * meter counted beyond its grants (bytes read from the client before they could be
 * checked, at most one socket read) is committed, so committed always covers the meter.
 *
 * The bound: with limits unchanged, a connection overshoots by less than one chunk of
 * data (a socket read, 64 KiB at most; the last grant's rest lets its last chunk through)
 * plus the bytes it read from the client before the gate refused (another 64 KiB) and
 * its request headers (16 KiB at most): under 144 KiB per connection, in bytes of a cap,
 * and in money the price of 144 KiB at its exit. When a limit is lowered or a balance
 * reduced under open connections, each may also use the rest of the grant it holds (at
 * most chunkBytes, or their price) until the guard's next check cuts it, which it does
 * once the key or account has committed more than a chunk (at the highest price) beyond
 * the new limit.
 *
 * Bytes the gateway had handed to the kernel when a cut resets the connection are billed
 * (the meter counts what was written to the socket), though the reset discards what the
 * client had not received yet.
 */

import type { KeyStanding } from '../accounts/index.ts';
import { BYTES_PER_GB, type PriceBook } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import { allowanceBuckets } from '../metering/index.ts';
import type { AllowanceLedger } from '../store/index.ts';
import type { Exit } from './exit-index.ts';

export interface AllowancesOptions {
  ledger: AllowanceLedger;
  standing(keyIds: readonly string[], monthStart: Date): Promise<KeyStanding[]>;
  /** Bytes asked for per grant while plenty is left; grants shrink near zero. */
  chunkBytes: number;
  /** Customer prices: the balance is spent at the price of the connection's exit. */
  prices: Pick<PriceBook, 'customerRate' | 'highestCustomerRate'>;
  /** How long a key's limits read from the database are reused (a flush also renews them). */
  limitsTtlMs: number;
  /**
   * How long after they were read a key's limits still bound its grants while the
   * database cannot be asked (see "When PostgreSQL or Redis is down" in the README); 0: never.
   */
  staleForMs?: number;
  /** Told each time a key's last limits stand in for the database's. */
  onStale?: (error: unknown) => void;
  /** A return or charge that could not reach hot state, or limits the database did not give. */
  onError(error: unknown): void;
  now?: () => number;
}

export interface AllowanceOwner {
  id: string;
  accountId: string;
}

/** What prices an exit: its type, and its country for a country's own price. */
export type PricedExit = Pick<Exit, 'type' | 'country'>;

export interface Allowances {
  /** A connection's allowance holding its first grant; throws quota_exhausted when none is left. */
  open(key: AllowanceOwner): Promise<Allowance>;
  /**
   * Reads the keys' standing, and which of them have committed more than their limits
   * allow (a limit lowered, or the balance reduced, under open grants); overdrawn is null
   * when a flush ran meanwhile and the two readings cannot be compared.
   */
  judge(keyIds: readonly string[]): Promise<{ rows: KeyStanding[]; overdrawn: Set<string> | null }>;
  /** Sends the returns and charges hot state could not take when they were made. */
  retry(): void;
}

/** Allowances without limits: for a gateway built without a ledger (tests of other parts). */
export function unlimitedAllowances(chunkBytes: number): Allowances {
  return {
    async open() {
      return new Allowance({
        buckets: null,
        reserve: async (want) => want,
        commit: () => {},
        chunkBytes,
        microPerByte: 0,
        priceOf: () => 0,
      });
    },
    judge: async () => ({ rows: [], overdrawn: null }),
    retry: () => {},
  };
}

/**
 * The limits read with `settled` = [account, key] totals, as they stand now that the
 * totals are `now`: what was settled since left committed and is spent from them instead.
 */
function lowered(limits: Limits, now: readonly number[]): KeyStanding | undefined {
  const { row } = limits;
  if (!row) return row;
  const spentMicro = (now[0] ?? 0) - (limits.settled[0] ?? 0);
  const spentBytes = (now[1] ?? 0) - (limits.settled[1] ?? 0);
  return {
    ...row,
    balanceMicro: row.balanceMicro - spentMicro,
    monthBytes: row.monthBytes + spentBytes,
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
  /** The ledger's settled() of [account, key] before the database was read: see limitsOf(). */
  settled: readonly number[];
  at: number;
  row: KeyStanding | undefined;
}

export function createAllowances(options: AllowancesOptions): Allowances {
  const { ledger, prices } = options;
  const now = options.now ?? Date.now;
  const cache = new Map<string, Limits>();
  const reading = new Map<string, Promise<Limits>>();

  const readLimits = (key: AllowanceOwner): Promise<Limits> => {
    const keyId = key.id;
    let pending = reading.get(keyId);
    if (!pending) {
      pending = (async () => {
        // The epoch before the database: a flush between the two makes the reservation
        // come back null, so a debit is never missed by both the limit and committed.
        const [epoch, settled] = await Promise.all([
          ledger.epoch(),
          ledger.settled(allowanceBuckets(key.id, key.accountId)),
        ]);
        const at = now();
        const [row] = await options.standing([keyId], monthStart(at));
        const limits = { epoch, settled, at, row };
        if (cache.size >= 10_000) cache.clear();
        cache.set(keyId, limits);
        return limits;
      })().finally(() => reading.delete(keyId));
      reading.set(keyId, pending);
    }
    return pending;
  };

  const limitsOf = async (key: AllowanceOwner, fresh: boolean): Promise<Limits> => {
    const cached = cache.get(key.id);
    if (!fresh && cached && now() - cached.at < options.limitsTtlMs) return cached;
    try {
      return await readLimits(key);
    } catch (error) {
      // The database is down: grants go on under the last limits it gave, for at most
      // staleForMs after it gave them, at the current epoch. Committed holds every grant
      // and every metered byte not flushed; what was flushed since the limits were read
      // (a flush just before the outage, or other servers' when only this one lost the
      // database) left committed for the database, so it comes off the limits here: they
      // bound spend exactly as when the database is up.
      if (!cached || now() - cached.at > (options.staleForMs ?? 0)) throw error;
      const [epoch, settled] = await Promise.all([
        ledger.epoch(),
        ledger.settled(allowanceBuckets(key.id, key.accountId)),
      ]);
      // Totals only grow: one that shrank means hot state restarted empty, and committed
      // with it; nothing then says what these limits no longer cover.
      if (settled.some((total, i) => total < (cached.settled[i] ?? 0))) throw error;
      options.onStale?.(error);
      return { ...cached, epoch, row: lowered(cached, settled) };
    }
  };

  const reserve = async (key: AllowanceOwner, want: number, microPerByte: number) => {
    const [accountBucket, keyBucket] = allowanceBuckets(key.id, key.accountId);
    for (let attempt = 0; attempt < RESERVE_ATTEMPTS; attempt++) {
      const { epoch, row } = await limitsOf(key, attempt > 0);
      if (!row?.usable) return 0;
      const granted = await ledger.reserve(
        [
          { id: accountBucket, limit: row.balanceMicro, rate: microPerByte },
          {
            id: keyBucket,
            limit: row.monthlyByteCap === null ? UNLIMITED : row.monthlyByteCap - row.monthBytes,
            rate: 1,
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

  /**
   * Returns and charges hot state could not take yet, summed per bucket (so bounded by the
   * buckets in use, not by time): sent with the next one that goes, and by retry().
   */
  let unsent = new Map<string, number>();
  let sending = false;
  const sendUnsent = () => {
    if (sending || unsent.size === 0) return;
    const batch = unsent;
    unsent = new Map();
    sending = true;
    ledger.adjust(Object.fromEntries(batch)).then(
      () => {
        sending = false;
        // What came meanwhile goes at once: a return held back is room a key lacks.
        sendUnsent();
      },
      (error: unknown) => {
        sending = false;
        for (const [bucket, amount] of batch) {
          unsent.set(bucket, (unsent.get(bucket) ?? 0) + amount);
        }
        options.onError(error);
      },
    );
  };

  return {
    async open(key) {
      const buckets = allowanceBuckets(key.id, key.accountId);
      let unreachable: unknown;
      const allowance = new Allowance({
        buckets,
        reserve: (want, microPerByte) =>
          reserve(key, want, microPerByte).catch((error: unknown) => {
            // No grant without hot state, nor past the outage bound without the database:
            // the connection is refused or cut (see README).
            unreachable = error;
            options.onError(error);
            throw error;
          }),
        commit: (amounts) => {
          for (const [bucket, amount] of Object.entries(amounts)) {
            unsent.set(bucket, (unsent.get(bucket) ?? 0) + amount);
          }
          sendUnsent();
        },
        chunkBytes: options.chunkBytes,
        // The exit is not chosen yet: the dearest one bounds what the first grant may cost.
        microPerByte: prices.highestCustomerRate() / BYTES_PER_GB,
        priceOf: (exit) => prices.customerRate(exit.type, exit.country ?? '') / BYTES_PER_GB,
      });
      if (!(await allowance.more())) {
        allowance.close();
        // Out of credit is a verdict; a store that did not answer is not one.
        if (unreachable !== undefined) {
          throw ipcolaError(
            'service_unavailable',
            'no allowance can be granted now: the database or hot state is unavailable',
            { cause: unreachable },
          );
        }
        throw ipcolaError('quota_exhausted');
      }
      return allowance;
    },
    retry: sendUnsent,
    async judge(keyIds) {
      const quiet = await ledger.quietEpoch();
      const rows = await options.standing(keyIds, monthStart(now()));
      if (quiet === null || rows.length === 0) return { rows, overdrawn: null };
      const ids = rows.flatMap((row) => allowanceBuckets(row.keyId, row.accountId));
      const committed = await ledger.committed(ids);
      if ((await ledger.epoch()) !== quiet) return { rows, overdrawn: null };
      const overdrawn = new Set<string>();
      // Connections overdraw by up to a socket read each (their last chunk, bytes read
      // before a refusal): that is spend, bounded, not a lowered limit to cut for.
      const slackBytes = options.chunkBytes;
      const slackMicro = (options.chunkBytes * prices.highestCustomerRate()) / BYTES_PER_GB;
      rows.forEach((row, i) => {
        const account = committed[2 * i] ?? 0;
        const key = committed[2 * i + 1] ?? 0;
        if (
          account > row.balanceMicro + slackMicro ||
          (row.monthlyByteCap !== null && key > row.monthlyByteCap - row.monthBytes + slackBytes)
        ) {
          overdrawn.add(row.keyId);
        }
      });
      return { rows, overdrawn };
    },
  };
}

export interface AllowanceParts {
  /** The hot-state buckets it is granted from, [account's, key's]; null when unlimited. */
  buckets: readonly [account: string, key: string] | null;
  /** Reserves up to `want` bytes at `microPerByte` from the account; resolves with the bytes granted. */
  reserve(want: number, microPerByte: number): Promise<number>;
  /** Adds to what the buckets committed (negative: returns). */
  commit(amounts: Record<string, number>): void;
  chunkBytes: number;
  /** The price per byte until an exit is known. */
  microPerByte: number;
  /** The customer's price per byte of an exit. */
  priceOf(exit: PricedExit): number;
}

/**
 * One connection's allowance: bytes granted from its key's cap, and their price at the
 * connection's exit from its account's balance. The splice (and the forwarder) take()
 * every chunk before writing it; the meter settles what the client socket really moved,
 * headers included, so that close() returns or charges the exact difference.
 */
export class Allowance {
  readonly #parts: AllowanceParts;
  /** Micro-units one byte costs through the connection's exit (the dearest until it is known). */
  #rate: number;
  /** Bytes granted from the key, and money from the account. */
  #grantedBytes = 0;
  #grantedMicro = 0;
  /** What this connection is charged: taken, corrected to the meter at each settle. */
  #spentBytes = 0;
  #spentMicro = 0;
  /** Taken since the meter last settled. */
  #takenBytes = 0;
  #takenMicro = 0;
  #asking: Promise<boolean> | null = null;
  #closed = false;

  constructor(parts: AllowanceParts) {
    this.#parts = parts;
    this.#rate = parts.microPerByte;
  }

  /** Granted bytes not used yet (at the current price). */
  get remaining(): number {
    return this.#grantedBytes - this.#spentBytes;
  }

  /** Bytes taken since the meter last settled (a request's body or answer got under way). */
  get taken(): number {
    return this.#takenBytes;
  }

  /**
   * From now on bytes cost the customer's price at `exit`; returns it per byte, for the
   * meter. What the grant held beyond what the new price needs goes back at once: the
   * money of a dearer price, or the bytes the money no longer buys at a dearer one.
   */
  priceAt(exit: PricedExit): number {
    const rate = this.#parts.priceOf(exit);
    if (rate !== this.#rate) {
      this.#rate = rate;
      this.#fit();
    }
    return rate;
  }

  take(bytes: number): true | Promise<boolean> {
    if (this.#spentBytes + bytes <= this.#grantedBytes) {
      this.#spend(bytes);
      // The next grant is asked for while a quarter of this one is left, so a busy
      // connection seldom pauses for it (a pause per chunk cost downloads about 20 %).
      if (
        this.#asking === null &&
        this.#grantedBytes - this.#spentBytes < this.#parts.chunkBytes / 4
      ) {
        void this.more();
      }
      return true;
    }
    return this.#takeLater(bytes);
  }

  /** Asks for the next grant (one request at a time); false when none is left. */
  more(): Promise<boolean> {
    const rate = this.#rate;
    this.#asking ??= this.#parts
      .reserve(this.#parts.chunkBytes, rate)
      .then(
        (granted) => {
          if (this.#closed) {
            // Arrived after the connection ended: straight back.
            if (granted > 0) this.#commit(-granted * rate, -granted);
            return false;
          }
          this.#grantedBytes += granted;
          this.#grantedMicro += granted * rate;
          // Priced again while it was asked for: what the new price does not need goes back.
          if (rate !== this.#rate) this.#fit();
          return granted > 0;
        },
        () => false,
      )
      .finally(() => {
        this.#asking = null;
      });
    return this.#asking;
  }

  /**
   * The meter counted `bytes` on the client socket since the last settle, at `microPerByte`
   * (the price of the exit they went through; the current one by default). Returns what
   * they took from each bucket, for the meter to carry to hot state.
   */
  settle(bytes: number, microPerByte = this.#rate): Record<string, number> {
    const micro = bytes * microPerByte;
    this.#spentBytes += bytes - this.#takenBytes;
    this.#spentMicro += micro - this.#takenMicro;
    this.#takenBytes = 0;
    this.#takenMicro = 0;
    return this.#amounts(micro, bytes);
  }

  /** Returns what was granted and not used, or commits what was used beyond the grants. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#commit(this.#spentMicro - this.#grantedMicro, this.#spentBytes - this.#grantedBytes);
  }

  #spend(bytes: number): void {
    const micro = bytes * this.#rate;
    this.#spentBytes += bytes;
    this.#spentMicro += micro;
    this.#takenBytes += bytes;
    this.#takenMicro += micro;
  }

  /**
   * Gives back what the grants hold beyond what the bytes left cost at the current
   * price, so that bytes and money left stay in step and take() need only count bytes.
   */
  #fit(): void {
    const bytesLeft = this.#grantedBytes - this.#spentBytes;
    const microLeft = this.#grantedMicro - this.#spentMicro;
    // A millionth of a byte of slack: the money of b bytes divided back may fall short of b.
    const bought = this.#rate > 0 ? Math.floor(microLeft / this.#rate + 1e-6) : bytesLeft;
    const usable = Math.max(0, Math.min(bytesLeft, bought));
    const spareBytes = Math.max(0, bytesLeft - usable);
    const spareMicro = Math.max(0, microLeft - usable * this.#rate);
    if (spareBytes === 0 && spareMicro < MICRO_WORTH_RETURNING) return;
    this.#grantedBytes -= spareBytes;
    this.#grantedMicro -= spareMicro;
    this.#commit(-spareMicro, -spareBytes);
  }

  #commit(micro: number, bytes: number): void {
    if (micro === 0 && bytes === 0) return;
    this.#parts.commit(this.#amounts(micro, bytes));
  }

  #amounts(micro: number, bytes: number): Record<string, number> {
    const buckets = this.#parts.buckets;
    if (buckets === null) return {};
    return { [buckets[0]]: micro, [buckets[1]]: bytes };
  }

  async #takeLater(bytes: number): Promise<boolean> {
    while (this.#spentBytes + bytes > this.#grantedBytes) {
      if (this.#closed) return false;
      if (!(await this.more())) {
        // The last grant covers part of this chunk: the chunk goes, overdrawing by less
        // than its size, so that the credit is used up to the byte and then refused.
        if (this.#grantedBytes - this.#spentBytes > 0) break;
        return false;
      }
    }
    this.#spend(bytes);
    return true;
  }
}

/** Money left in a grant below this stays with it until the connection ends: not worth a call. */
const MICRO_WORTH_RETURNING = 1;

/** The first instant of the UTC month: monthly caps reset then. */
export function monthStart(at: number): Date {
  const date = new Date(at);
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1));
}
