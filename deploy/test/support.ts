/** What the cluster tests share: a Redis database of their own, emptied afterwards. */
import { Redis } from 'ioredis';
import { required } from '../../server/test/support/engines.ts';

/**
 * One of Redis's numbered databases, picked at random as the server tests pick theirs:
 * other tests' servers sharing a database would apply this cluster's usage batches.
 */
export function ownRedisDatabase(): string {
  const url = new URL(required('REDIS_URL'));
  url.pathname = `/${1 + Math.floor(Math.random() * 15)}`;
  return url.toString();
}

/** Deletes the servers' keys (prefix `ipcola:`) from a Redis database. */
export async function deleteIpcolaKeys(url: string): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', 'ipcola:*', 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
