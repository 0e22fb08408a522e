import { EventEmitter } from 'node:events';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import {
  type CounterBatch,
  grantFor,
  type HotState,
  NEGLIGIBLE_AMOUNT,
  newBatchId,
} from './hot-state.ts';

interface Expiring {
  value: string;
  expiresAt: number;
}

/** Hot state inside this process: the embedded default, lost on exit (shutdown flushes first). */
export function createMemoryHotState(now: () => number = Date.now): HotState {
  const sessions = new Map<string, Expiring>();
  const registry = new Map<string, Map<string, Expiring>>();
  const counters = new Map<string, Map<string, number>>();
  const batches = new Map<string, Map<string, CounterBatch>>();
  const committed = new Map<string, number>();
  const settled = new Set<string>();
  const settling = new Set<string>();
  let epoch = 0;
  /** What settled batches took out of each bucket, in all. */
  const settledTotals = new Map<string, number>();
  let closed = false;
  const topics = new EventEmitter<Record<string, [string]>>();
  topics.setMaxListeners(0);

  const live = (entry: Expiring | undefined): entry is Expiring =>
    entry !== undefined && entry.expiresAt > now();

  // Expired entries are also dropped on access; the sweep only bounds memory.
  const sweep = setInterval(() => {
    const t = now();
    for (const [key, entry] of sessions) if (entry.expiresAt <= t) sessions.delete(key);
    for (const entries of registry.values()) {
      for (const [id, entry] of entries) if (entry.expiresAt <= t) entries.delete(id);
    }
  }, 10_000);
  sweep.unref();

  const assertOpen = () => {
    if (closed) throw new Error('hot state is closed');
  };

  return {
    engine: 'memory',
    sessions: {
      async claim(key, value, ttlMs) {
        assertOpen();
        const entry = sessions.get(key);
        const pinned = live(entry) ? entry.value : value;
        sessions.set(key, { value: pinned, expiresAt: now() + ttlMs });
        return pinned;
      },
      async touch(key, ttlMs) {
        assertOpen();
        const entry = sessions.get(key);
        if (!live(entry)) {
          sessions.delete(key);
          return null;
        }
        entry.expiresAt = now() + ttlMs;
        return entry.value;
      },
      async peek(key) {
        assertOpen();
        const entry = sessions.get(key);
        return live(entry) ? entry.value : null;
      },
      async inspect(key) {
        assertOpen();
        const entry = sessions.get(key);
        return live(entry) ? { value: entry.value, ttlMs: entry.expiresAt - now() } : null;
      },
      async release(key) {
        assertOpen();
        sessions.delete(key);
      },
    },
    counters: {
      async add(group, deltas) {
        assertOpen();
        const counts = entryOf(counters, group);
        for (const [field, by] of Object.entries(deltas)) {
          if (by !== 0) counts.set(field, (counts.get(field) ?? 0) + by);
        }
      },
      async read(group) {
        assertOpen();
        return Object.fromEntries(counters.get(group) ?? []);
      },
      async seal(group) {
        assertOpen();
        const counts = counters.get(group);
        if (!counts || counts.size === 0) return null;
        counters.delete(group);
        const batch = { id: newBatchId(now()), counts: Object.fromEntries(counts) };
        entryOf(batches, group).set(batch.id, batch);
        return batch;
      },
      async pending(group) {
        assertOpen();
        return [...(batches.get(group)?.values() ?? [])]; // a Map keeps sealing order
      },
      async ack(group, batchId) {
        assertOpen();
        batches.get(group)?.delete(batchId);
      },
    },
    // One instance only: nothing else can hold grants, so there are no holds to keep.
    allowances: {
      async epoch() {
        assertOpen();
        return String(epoch);
      },
      async reserve(buckets, want, minimum, seen) {
        assertOpen();
        if (seen !== String(epoch)) return null;
        let grant = want;
        for (const bucket of buckets) {
          const room = bucket.limit - (committed.get(bucket.id) ?? 0);
          grant = Math.min(grant, grantFor(room, bucket.rate, want, minimum));
        }
        if (grant <= 0) return 0;
        for (const bucket of buckets) add(committed, bucket.id, grant * bucket.rate);
        return grant;
      },
      async adjust(amounts) {
        assertOpen();
        for (const [id, by] of Object.entries(amounts)) add(committed, id, by);
      },
      async committed(bucketIds) {
        assertOpen();
        return bucketIds.map((id) => committed.get(id) ?? 0);
      },
      async quietEpoch() {
        assertOpen();
        return settling.size === 0 ? String(epoch) : null;
      },
      async beginSettle(batchId) {
        assertOpen();
        settling.add(batchId);
        epoch += 1;
      },
      async settle(batchId, amounts) {
        assertOpen();
        settling.delete(batchId);
        epoch += 1;
        if (settled.has(batchId)) return;
        settled.add(batchId);
        // Only a replay right after a failed acknowledgement settles a batch twice here.
        if (settled.size > 1_000) settled.delete(settled.values().next().value as string);
        for (const [id, amount] of Object.entries(amounts)) {
          add(committed, id, -amount);
          settledTotals.set(id, (settledTotals.get(id) ?? 0) + amount);
        }
      },
      async settled(bucketIds) {
        assertOpen();
        return bucketIds.map((id) => settledTotals.get(id) ?? 0);
      },
      async reconcile() {
        assertOpen();
        return 0;
      },
    },
    registry: {
      async put(kind, id, value, ttlMs) {
        assertOpen();
        entryOf(registry, kind).set(id, { value, expiresAt: now() + ttlMs });
      },
      async remove(kind, id) {
        assertOpen();
        registry.get(kind)?.delete(id);
      },
      async get(kind, id) {
        assertOpen();
        const entry = registry.get(kind)?.get(id);
        return live(entry) ? entry.value : null;
      },
      async list(kind) {
        assertOpen();
        const result: Array<{ id: string; value: string }> = [];
        for (const [id, entry] of registry.get(kind) ?? []) {
          if (live(entry)) result.push({ id, value: entry.value });
        }
        return result;
      },
    },
    broadcast: {
      async publish(topic, message) {
        assertOpen();
        topics.emit(topic, message);
      },
      subscribe(topic, onMessage, onReady) {
        topics.on(topic, onMessage);
        if (onReady) queueMicrotask(onReady);
        return () => topics.off(topic, onMessage);
      },
    },
    rateLimiter: (options) =>
      new RateLimiterMemory({
        keyPrefix: options.name,
        points: options.points,
        duration: options.durationSec,
        blockDuration: options.blockDurationSec ?? 0,
      }),
    async ping() {
      assertOpen();
    },
    async close() {
      closed = true;
      clearInterval(sweep);
      topics.removeAllListeners();
    },
  };
}

/** Adds to a count, forgetting it at zero so that idle buckets cost nothing. */
function add(counts: Map<string, number>, id: string, by: number): void {
  const next = (counts.get(id) ?? 0) + by;
  if (Math.abs(next) < NEGLIGIBLE_AMOUNT) counts.delete(id);
  else counts.set(id, next);
}

function entryOf<K, V>(map: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let inner = map.get(key);
  if (!inner) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}
