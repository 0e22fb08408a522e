import type { RateLimiterAbstract } from 'rate-limiter-flexible';

/**
 * Fast shared state that may be lost without losing money: sticky sessions, byte
 * counters waiting to be flushed, the live node registry, rate limits.
 * In-process for one server, Redis when several share the work.
 */
export interface HotState {
  readonly engine: 'memory' | 'redis';
  readonly sessions: SessionTable;
  readonly counters: CounterStore;
  readonly registry: LiveRegistry;
  readonly allowances: AllowanceLedger;
  /** Messages to every instance sharing this engine (in-process: this one only). */
  readonly broadcast: Broadcast;
  /** A limiter sharing this engine's storage, e.g. auth failures per client IP. */
  rateLimiter(options: RateLimiterOptions): RateLimiterAbstract;
  /** Resolves when the engine answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Values pinned under a key for a time-to-live that every use renews. */
export interface SessionTable {
  /** Pins value under key unless something is pinned already; returns what is pinned now. Renews the TTL. */
  claim(key: string, value: string, ttlMs: number): Promise<string>;
  /** The pinned value with its TTL renewed, or null when none is pinned. */
  touch(key: string, ttlMs: number): Promise<string | null>;
  /** The pinned value without renewing it. */
  peek(key: string): Promise<string | null>;
  /** The pinned value and the milliseconds it has left, without renewing it; null when none. */
  inspect(key: string): Promise<{ value: string; ttlMs: number } | null>;
  release(key: string): Promise<void>;
}

/**
 * Named groups of integer counters. Writers add; a flusher seals the current counts
 * into a numbered batch, persists it, then acknowledges it. A batch that was sealed
 * but not acknowledged (a crash in between) is still there in pending().
 */
export interface CounterStore {
  /**
   * Adds deltas to a group's counters. `used`: what these counts took from each
   * allowance bucket (bytes, or money at their exit's price); it leaves this instance's
   * hold in the same atomic step, so that a crash right after can neither lose it nor
   * count it twice (see AllowanceLedger).
   */
  add(
    group: string,
    deltas: Readonly<Record<string, number>>,
    used?: Readonly<Record<string, number>>,
  ): Promise<void>;
  /** The current, unsealed counts. */
  read(group: string): Promise<Record<string, number>>;
  /** Moves the current counts into a new batch atomically; null when there was nothing to seal. */
  seal(group: string): Promise<CounterBatch | null>;
  /** Sealed batches not yet acknowledged, oldest first. */
  pending(group: string): Promise<CounterBatch[]>;
  ack(group: string, batchId: string): Promise<void>;
}

export interface CounterBatch {
  readonly id: string;
  readonly counts: Record<string, number>;
}

/**
 * What connections may still spend, reserved in byte chunks before they move them (the
 * way telecom online charging grants quota). Each bucket (an account's balance in
 * micro-units, a key's monthly cap in bytes) has a `committed` count: what grants to
 * connections took from it and was not returned, plus usage metered and not yet flushed
 * to the database. What a bucket may still grant is its limit (what the database says,
 * read after the epoch) minus committed. A bucket counts in its own unit: a grant of b
 * bytes takes b × rate from each bucket, the rate being the bucket's unit per byte (1
 * for a cap, the exit's price per byte for a balance). Money amounts are fractions of a
 * micro-unit here: committed is a bound, the exact charge is the journal's.
 *
 * Flushed usage leaves committed when the flush settles its batch (once per batch id);
 * settling moves the epoch, so a reservation made with limits read before that flush is
 * refused (null) and the caller reads the limits again: a flush can never be counted
 * both in the limit and out of committed.
 *
 * Each instance's grants not yet metered are its hold. When an instance stops without
 * returning them (a crash), reconcile() on any other instance gives them back: what
 * the crashed instance had metered and pushed stays committed until flushed, the rest
 * is released. The in-process engine serves one instance only and keeps no holds.
 */
export interface AllowanceLedger {
  /** The current flush epoch: read it before the limits a reservation is checked against. */
  epoch(): Promise<string>;
  /**
   * Reserves one grant of bytes in every bucket at once: `want`, or less when a bucket
   * has less room for it at its rate (near zero the grant shrinks to a fraction of the
   * room, never below `minimum` unless the room itself is smaller), each bucket
   * committing the grant times its rate. Returns the bytes reserved (0 when a bucket has
   * no room for one byte), or null when `epoch` is no longer current.
   */
  reserve(
    buckets: readonly AllowanceBucket[],
    want: number,
    minimum: number,
    epoch: string,
  ): Promise<number | null>;
  /** Adds each amount to its bucket's committed count and this instance's hold (negative: returns). */
  adjust(amounts: Readonly<Record<string, number>>): Promise<void>;
  /** Committed amounts per bucket, in the order asked. */
  committed(bucketIds: readonly string[]): Promise<number[]>;
  /**
   * The epoch when no flush is between its database commit and its settle(), else null.
   * In that window the flushed usage is in both the database and committed: a reading
   * of both is conservative for grants but would make a key look overdrawn.
   */
  quietEpoch(): Promise<string | null>;
  /** A flush of this batch is about to write the database; moves the epoch. */
  beginSettle(batchId: string): Promise<void>;
  /** Flushed usage leaves the buckets, once per batch id; ends the batch's flush and moves the epoch. */
  settle(batchId: string, amounts: Readonly<Record<string, number>>): Promise<void>;
  /**
   * What settled batches have taken out of each bucket so far, in all (each batch once),
   * in the order asked. Limits read from the database after this said s still bound
   * grants without the database once lowered by what it grew since: that much left
   * committed for the database, which the limits did not hold (the outage fallback).
   */
  settled(bucketIds: readonly string[]): Promise<number[]>;
  /** Renews this instance's liveness and releases the holds of stopped ones; returns how many. */
  reconcile(): Promise<number>;
}

export interface AllowanceBucket {
  id: string;
  /** What the bucket may commit in all: balance or remaining cap, from the database. */
  limit: number;
  /** The bucket's units one byte takes: 1 for bytes, micro-units per byte for money. */
  rate: number;
}

/** Entries that vanish unless refreshed before their TTL, e.g. online nodes. */
export interface LiveRegistry {
  put(kind: string, id: string, value: string, ttlMs: number): Promise<void>;
  remove(kind: string, id: string): Promise<void>;
  get(kind: string, id: string): Promise<string | null>;
  /** Every live entry of a kind. */
  list(kind: string): Promise<Array<{ id: string; value: string }>>;
}

/**
 * Fire-and-forget messages between instances (Redis pub/sub): a message sent while an
 * instance is disconnected is lost to it, so every listener also has a way to resync
 * (onReady fires on each (re)subscription).
 */
export interface Broadcast {
  publish(topic: string, message: string): Promise<void>;
  /** Hears every message on topic from now on; returns the unsubscribe. */
  subscribe(topic: string, onMessage: (message: string) => void, onReady?: () => void): () => void;
}

export interface RateLimiterOptions {
  /** Distinguishes limiters sharing the engine. */
  name: string;
  points: number;
  durationSec: number;
  /** How long a client that used up its points stays blocked. */
  blockDurationSec?: number;
}

/** A batch id that sorts by creation time and is unique across server instances. */
export function newBatchId(now = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * The bytes one reservation grants from a bucket with `room` left at `rate` units per
 * byte: `want` while room is plenty; near zero an eighth of the room (at least
 * `minimum`), so that the last bytes are shared among a key's connections instead of all
 * going to the first that asks. Never more bytes than the room pays for at the rate.
 */
export function grantFor(room: number, rate: number, want: number, minimum: number): number {
  if (room <= 0) return 0;
  let bytes = want;
  if (rate > 0) {
    bytes = Math.floor(room / rate);
    // Floating point may round the quotient up past what the room pays for.
    if (bytes * rate > room) bytes -= 1;
  }
  if (bytes <= 0) return 0;
  return Math.min(want, bytes, Math.max(minimum, Math.floor(bytes / 8)));
}

/**
 * Below this a money count is a rounding residue of fractions of a micro-unit, not
 * spend: it is forgotten rather than kept forever for an idle bucket.
 */
export const NEGLIGIBLE_AMOUNT = 1e-6;
