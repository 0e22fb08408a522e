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
  add(group: string, deltas: Readonly<Record<string, number>>): Promise<void>;
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

/** Entries that vanish unless refreshed before their TTL, e.g. online nodes. */
export interface LiveRegistry {
  put(kind: string, id: string, value: string, ttlMs: number): Promise<void>;
  remove(kind: string, id: string): Promise<void>;
  get(kind: string, id: string): Promise<string | null>;
  /** Every live entry of a kind. */
  list(kind: string): Promise<Array<{ id: string; value: string }>>;
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
