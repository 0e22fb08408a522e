import { randomUUID } from 'node:crypto';
import { Redis, ReplyError } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { Logger } from '../log/index.ts';
import {
  type Broadcast,
  type CounterBatch,
  type HotState,
  NEGLIGIBLE_AMOUNT,
  newBatchId,
} from './hot-state.ts';
import { StoreUnavailableError } from './unavailable.ts';

// Time comes from Redis itself so that every server instance agrees on expiry.
const NOW_MS = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Adds to a hash field in floating point (money is fractions of a micro-unit here),
 * forgetting the field once only a rounding residue is left (NEGLIGIBLE_AMOUNT).
 */
const ADD_OR_FORGET = `local function add(hash, field, by)
  if tonumber(by) == 0 then return end
  if math.abs(tonumber(redis.call('HINCRBYFLOAT', hash, field, by))) < ${NEGLIGIBLE_AMOUNT} then
    redis.call('HDEL', hash, field)
  end
end`;

const SCRIPTS = {
  /** KEYS: session. ARGV: value, ttlMs. */
  sessionClaim: {
    numberOfKeys: 1,
    lua: `local v = redis.call('GET', KEYS[1])
      if v then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return v end
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1]`,
  },
  /** KEYS: current counters, batch, batch index, seal sequence. ARGV: batch id. */
  counterSeal: {
    numberOfKeys: 4,
    lua: `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
      redis.call('RENAME', KEYS[1], KEYS[2])
      redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
      return 1`,
  },
  /**
   * KEYS: committed, epoch, this holder's hold, holders. ARGV: epoch, want, minimum,
   * holder, then id, limit and rate per bucket. The grant formula is grantFor()'s.
   */
  allowanceReserve: {
    numberOfKeys: 4,
    lua: `if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return -1 end
      local want = tonumber(ARGV[2]) local minimum = tonumber(ARGV[3])
      local grant = want
      for i = 5, #ARGV, 3 do
        local room = tonumber(ARGV[i + 1]) - tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
        local rate = tonumber(ARGV[i + 2])
        local g = 0
        if room > 0 then
          local bytes = want
          if rate > 0 then
            bytes = math.floor(room / rate)
            if bytes * rate > room then bytes = bytes - 1 end
          end
          if bytes > 0 then g = math.min(want, bytes, math.max(minimum, math.floor(bytes / 8))) end
        end
        if g < grant then grant = g end
      end
      if grant <= 0 then return 0 end
      for i = 5, #ARGV, 3 do
        local amount = grant * tonumber(ARGV[i + 2])
        redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], amount)
        redis.call('HINCRBYFLOAT', KEYS[3], ARGV[i], amount)
      end
      redis.call('SADD', KEYS[4], ARGV[4])
      return grant`,
  },
  /** KEYS: committed, this holder's hold, holders. ARGV: holder, then bucket id and amount... */
  allowanceAdjust: {
    numberOfKeys: 3,
    lua: `${ADD_OR_FORGET}
      for i = 2, #ARGV, 2 do
        add(KEYS[1], ARGV[i], ARGV[i + 1])
        add(KEYS[2], ARGV[i], ARGV[i + 1])
      end
      redis.call('SADD', KEYS[3], ARGV[1])
      return 1`,
  },
  /**
   * KEYS: committed, epoch, the batch's marker (kept a day: replays come within
   * minutes), batches settling, settled totals. ARGV: batch id, then bucket id and amount...
   */
  allowanceSettle: {
    numberOfKeys: 5,
    lua: `${ADD_OR_FORGET}
      redis.call('SREM', KEYS[4], ARGV[1])
      redis.call('INCR', KEYS[2])
      if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', 86400000) then return 0 end
      for i = 2, #ARGV, 2 do
        add(KEYS[1], ARGV[i], -tonumber(ARGV[i + 1]))
        if tonumber(ARGV[i + 1]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[5], ARGV[i], ARGV[i + 1]) end
      end
      return 1`,
  },
  /**
   * KEYS: committed, holders. ARGV: key prefix of holds, key prefix of liveness, this
   * holder, liveness ttlMs. Renews this holder, then gives the holds of holders whose
   * liveness lapsed back to their buckets.
   */
  allowanceReconcile: {
    numberOfKeys: 2,
    lua: `${ADD_OR_FORGET}
      redis.call('SET', ARGV[2] .. ARGV[3], '1', 'PX', ARGV[4])
      redis.call('SADD', KEYS[2], ARGV[3])
      local released = 0
      for _, holder in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        if redis.call('EXISTS', ARGV[2] .. holder) == 0 then
          local held = redis.call('HGETALL', ARGV[1] .. holder)
          for i = 1, #held, 2 do add(KEYS[1], held[i], -tonumber(held[i + 1])) end
          redis.call('DEL', ARGV[1] .. holder)
          redis.call('SREM', KEYS[2], holder)
          released = released + 1
        end
      end
      return released`,
  },
  /** KEYS: expiry index, values. ARGV: id, value, ttlMs. */
  registryPut: {
    numberOfKeys: 2,
    lua: `${NOW_MS}
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
      redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
      return 1`,
  },
  /** KEYS: expiry index, values. ARGV: id. */
  registryGet: {
    numberOfKeys: 2,
    lua: `${NOW_MS}
      local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
      if not expires or tonumber(expires) <= now then return false end
      return redis.call('HGET', KEYS[2], ARGV[1])`,
  },
  /** KEYS: expiry index, values. Returns id, value, id, value... and prunes the expired. */
  registryList: {
    numberOfKeys: 2,
    lua: `${NOW_MS}
      local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
      if #dead > 0 then
        redis.call('HDEL', KEYS[2], unpack(dead))
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
      end
      local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
      local out = {}
      if #ids == 0 then return out end
      local values = redis.call('HMGET', KEYS[2], unpack(ids))
      for i, id in ipairs(ids) do
        if values[i] then table.insert(out, id) table.insert(out, values[i]) end
      end
      return out`,
  },
} as const;

/**
 * An instance that has not called reconcile() for this long is taken for stopped and its
 * holds are released. It runs every few seconds (ALLOWANCE_RECONCILE_MS in the gateway).
 */
const HOLDER_TTL_MS = 30_000;

type ScriptName = keyof typeof SCRIPTS;
type ScriptedRedis = Redis & {
  [K in ScriptName]: (...args: Array<string | number>) => Promise<unknown>;
};

export interface RedisHotStateOptions {
  /** Prefix of every key, so several deployments (or test runs) can share one Redis. */
  prefix?: string;
  /** How long without reconcile() before this instance's allowance holds are released. */
  holderTtlMs?: number;
}

/**
 * Hot state in Redis, shared by every server instance. Commands fail fast while Redis
 * is down (no offline queue) and the client reconnects on its own.
 */
export async function openRedisHotState(
  url: string,
  logger: Logger,
  options: RedisHotStateOptions = {},
): Promise<HotState> {
  const prefix = options.prefix ?? 'ipcola:';
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    connectTimeout: 5_000,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  }) as ScriptedRedis;
  for (const [name, script] of Object.entries(SCRIPTS)) {
    redis.defineCommand(name, script);
  }

  let lastError = '';
  let firstFailure: Error | undefined;
  redis.on('error', (error: NodeJS.ErrnoException) => {
    firstFailure ??= error;
    // ioredis reports every failed reconnect; log each distinct failure once.
    const summary = error.code ?? error.message;
    if (summary !== lastError) logger.warn({ err: error }, 'redis connection error');
    lastError = summary;
  });
  redis.on('ready', () => {
    if (lastError) logger.info('redis connection restored');
    lastError = '';
  });

  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    // connect() rejects with a generic "closed"; the socket error says why.
    throw firstFailure ?? error;
  }

  const sessionKey = (key: string) => `${prefix}s:${key}`;
  const counterKeys = (group: string) => {
    const tag = `${prefix}{c:${group}}`;
    return {
      current: tag,
      index: `${tag}:batches`,
      sequence: `${tag}:seq`,
      batch: (id: string) => `${tag}:b:${id}`,
    };
  };
  const registryKeys = (kind: string) => {
    const tag = `${prefix}{r:${kind}}`;
    return { expiry: tag, values: `${tag}:v` };
  };
  // Every allowance key shares one hash tag: the scripts touch several of them at once.
  const allowanceTag = `${prefix}{al}`;
  const allowanceKeys = {
    committed: `${allowanceTag}:committed`,
    epoch: `${allowanceTag}:epoch`,
    settling: `${allowanceTag}:settling`,
    // One running total per bucket ever settled (a float per key and account).
    settledTotals: `${allowanceTag}:settled-totals`,
    holders: `${allowanceTag}:holders`,
    holdPrefix: `${allowanceTag}:hold:`,
    alivePrefix: `${allowanceTag}:alive:`,
    settled: (batchId: string) => `${allowanceTag}:settled:${batchId}`,
  };
  const broadcast = redisBroadcast(redis, `${prefix}topic:`, logger);
  // This instance's name among holders: new on every start, so a restart never inherits a hold.
  const holder = randomUUID();
  const myHold = `${allowanceKeys.holdPrefix}${holder}`;
  const toCounts = (hash: Record<string, string>): Record<string, number> =>
    Object.fromEntries(Object.entries(hash).map(([field, value]) => [field, Number(value)]));

  return {
    engine: 'redis',
    sessions: unavailableOnFailure({
      claim: async (key, value, ttlMs) =>
        (await redis.sessionClaim(sessionKey(key), value, Math.ceil(ttlMs))) as string,
      touch: (key, ttlMs) => redis.getex(sessionKey(key), 'PX', Math.ceil(ttlMs)),
      peek: (key) => redis.get(sessionKey(key)),
      async inspect(key) {
        const [[, value], [, ttlMs]] = (await redis
          .multi()
          .get(sessionKey(key))
          .pttl(sessionKey(key))
          .exec()) as [[unknown, string | null], [unknown, number]];
        return value === null || ttlMs < 0 ? null : { value, ttlMs };
      },
      async release(key) {
        await redis.del(sessionKey(key));
      },
    }),
    counters: unavailableOnFailure({
      async add(group, deltas, used = {}) {
        const entries = Object.entries(deltas).filter(([, by]) => by !== 0);
        if (entries.length === 0) return;
        const { current } = counterKeys(group);
        const tx = redis.multi();
        for (const [field, by] of entries) {
          if (!Number.isSafeInteger(by))
            throw new RangeError(`counter delta ${by} is not an integer`);
          tx.hincrby(current, field, by);
        }
        for (const [bucket, amount] of Object.entries(used)) {
          if (amount !== 0) tx.hincrbyfloat(myHold, bucket, -amount);
        }
        await tx.exec();
      },
      read: async (group) => toCounts(await redis.hgetall(counterKeys(group).current)),
      async seal(group) {
        const keys = counterKeys(group);
        const id = newBatchId();
        const sealed = await redis.counterSeal(
          keys.current,
          keys.batch(id),
          keys.index,
          keys.sequence,
          id,
        );
        if (sealed === 0) return null;
        return { id, counts: toCounts(await redis.hgetall(keys.batch(id))) };
      },
      async pending(group) {
        const keys = counterKeys(group);
        const ids = await redis.zrange(keys.index, '0', '-1');
        const batches: CounterBatch[] = [];
        for (const id of ids) {
          batches.push({ id, counts: toCounts(await redis.hgetall(keys.batch(id))) });
        }
        return batches;
      },
      async ack(group, batchId) {
        const keys = counterKeys(group);
        await redis.multi().del(keys.batch(batchId)).zrem(keys.index, batchId).exec();
      },
    }),
    allowances: unavailableOnFailure({
      epoch: async () => (await redis.get(allowanceKeys.epoch)) ?? '0',
      async reserve(buckets, want, minimum, epoch) {
        if (buckets.length === 0) return want;
        const args: Array<string | number> = [epoch, want, minimum, holder];
        for (const bucket of buckets) args.push(bucket.id, bucket.limit, bucket.rate);
        const granted = Number(
          await redis.allowanceReserve(
            allowanceKeys.committed,
            allowanceKeys.epoch,
            myHold,
            allowanceKeys.holders,
            ...args,
          ),
        );
        return granted < 0 ? null : granted;
      },
      async adjust(amounts) {
        const args = Object.entries(amounts)
          .filter(([, amount]) => amount !== 0)
          .flat();
        if (args.length === 0) return;
        await redis.allowanceAdjust(
          allowanceKeys.committed,
          myHold,
          allowanceKeys.holders,
          holder,
          ...args,
        );
      },
      async committed(bucketIds) {
        if (bucketIds.length === 0) return [];
        const values = await redis.hmget(allowanceKeys.committed, ...bucketIds);
        return values.map((value) => Number(value ?? 0));
      },
      async quietEpoch() {
        const [[, settling], [, epoch]] = (await redis
          .multi()
          .scard(allowanceKeys.settling)
          .get(allowanceKeys.epoch)
          .exec()) as [[unknown, number], [unknown, string | null]];
        return settling > 0 ? null : (epoch ?? '0');
      },
      async beginSettle(batchId) {
        await redis.multi().sadd(allowanceKeys.settling, batchId).incr(allowanceKeys.epoch).exec();
      },
      async settle(batchId, amounts) {
        const args = Object.entries(amounts).flat();
        await redis.allowanceSettle(
          allowanceKeys.committed,
          allowanceKeys.epoch,
          allowanceKeys.settled(batchId),
          allowanceKeys.settling,
          allowanceKeys.settledTotals,
          batchId,
          ...args,
        );
      },
      async settled(bucketIds) {
        if (bucketIds.length === 0) return [];
        const values = await redis.hmget(allowanceKeys.settledTotals, ...bucketIds);
        return values.map((value) => Number(value ?? 0));
      },
      async reconcile() {
        return Number(
          await redis.allowanceReconcile(
            allowanceKeys.committed,
            allowanceKeys.holders,
            allowanceKeys.holdPrefix,
            allowanceKeys.alivePrefix,
            holder,
            options.holderTtlMs ?? HOLDER_TTL_MS,
          ),
        );
      },
    }),
    registry: unavailableOnFailure({
      async put(kind, id, value, ttlMs) {
        const keys = registryKeys(kind);
        await redis.registryPut(keys.expiry, keys.values, id, value, Math.ceil(ttlMs));
      },
      async remove(kind, id) {
        const keys = registryKeys(kind);
        await redis.multi().zrem(keys.expiry, id).hdel(keys.values, id).exec();
      },
      async get(kind, id) {
        const keys = registryKeys(kind);
        return ((await redis.registryGet(keys.expiry, keys.values, id)) as string | null) ?? null;
      },
      async list(kind) {
        const keys = registryKeys(kind);
        const flat = (await redis.registryList(keys.expiry, keys.values)) as string[];
        const entries: Array<{ id: string; value: string }> = [];
        for (let i = 0; i + 1 < flat.length; i += 2) {
          entries.push({ id: flat[i] as string, value: flat[i + 1] as string });
        }
        return entries;
      },
    }),
    broadcast,
    rateLimiter(options) {
      const shape = {
        points: options.points,
        duration: options.durationSec,
        blockDuration: options.blockDurationSec ?? 0,
      };
      return new RateLimiterRedis({
        ...shape,
        storeClient: redis,
        keyPrefix: `${prefix}rl:${options.name}`,
        // While Redis is down each instance limits on its own rather than letting everything through.
        insuranceLimiter: new RateLimiterMemory({ ...shape, keyPrefix: options.name }),
      });
    },
    async ping() {
      await redis.ping();
    },
    async close() {
      await broadcast.close();
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}

/**
 * Pub/sub on a second connection (a subscribed connection takes no other command), opened
 * on the first subscribe. ioredis subscribes again by itself after a reconnect.
 */
function redisBroadcast(
  redis: Redis,
  prefix: string,
  logger: Logger,
): Broadcast & { close(): Promise<void> } {
  let subscriber: Redis | undefined;
  const listeners = new Map<string, Set<{ onMessage(m: string): void; onReady?(): void }>>();
  const open = (): Redis => {
    if (subscriber) return subscriber;
    const connection = redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    connection.on('error', () => {
      // The command connection logs the outage once; this one only reconnects.
    });
    connection.on('message', (channel: string, message: string) => {
      for (const listener of listeners.get(channel.slice(prefix.length)) ?? []) {
        try {
          listener.onMessage(message);
        } catch (error) {
          logger.error({ err: error, channel }, 'a broadcast listener failed');
        }
      }
    });
    connection.on('ready', () => {
      for (const set of listeners.values()) for (const listener of set) listener.onReady?.();
    });
    subscriber = connection;
    return connection;
  };
  return {
    async publish(topic, message) {
      await redis.publish(`${prefix}${topic}`, message);
    },
    subscribe(topic, onMessage, onReady) {
      const connection = open();
      let set = listeners.get(topic);
      if (!set) {
        set = new Set();
        listeners.set(topic, set);
        connection.subscribe(`${prefix}${topic}`).catch((error: unknown) => {
          logger.warn({ err: error, topic }, 'subscribing to a broadcast topic failed');
        });
      }
      const listener = { onMessage, ...(onReady ? { onReady } : {}) };
      set.add(listener);
      // Already subscribed and ready: this listener's first sync is now.
      if (onReady && connection.status === 'ready') queueMicrotask(onReady);
      return () => {
        set.delete(listener);
      };
    },
    async close() {
      subscriber?.disconnect();
      subscriber = undefined;
    },
  };
}

/**
 * The same methods, with every failure but Redis's own answer to a command (a ReplyError)
 * or a bug of ours reported as Redis being unavailable: with the offline queue off, a
 * command while the connection is down fails at once, and that is what the edges answer
 * with 503.
 */
function unavailableOnFailure<T extends object>(methods: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(methods)) {
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await (method as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (error) {
        if (error instanceof ReplyError || error instanceof TypeError) throw error;
        if (error instanceof RangeError) throw error;
        throw new StoreUnavailableError('redis', error);
      }
    };
  }
  return wrapped as T;
}
