import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { Logger } from '../log/index.ts';
import { type CounterBatch, type HotState, newBatchId } from './hot-state.ts';

// Time comes from Redis itself so that every server instance agrees on expiry.
const NOW_MS = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

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

type ScriptName = keyof typeof SCRIPTS;
type ScriptedRedis = Redis & {
  [K in ScriptName]: (...args: Array<string | number>) => Promise<unknown>;
};

export interface RedisHotStateOptions {
  /** Prefix of every key, so several deployments (or test runs) can share one Redis. */
  prefix?: string;
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
  const toCounts = (hash: Record<string, string>): Record<string, number> =>
    Object.fromEntries(Object.entries(hash).map(([field, value]) => [field, Number(value)]));

  return {
    engine: 'redis',
    sessions: {
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
    },
    counters: {
      async add(group, deltas) {
        const entries = Object.entries(deltas).filter(([, by]) => by !== 0);
        if (entries.length === 0) return;
        const { current } = counterKeys(group);
        const tx = redis.multi();
        for (const [field, by] of entries) {
          if (!Number.isSafeInteger(by))
            throw new RangeError(`counter delta ${by} is not an integer`);
          tx.hincrby(current, field, by);
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
    },
    registry: {
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
    },
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
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}
