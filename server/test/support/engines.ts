/**
 * The engines every data-layer test runs against: always the embedded defaults
 * (PGlite, in-process), and real PostgreSQL / Redis when DATABASE_URL / REDIS_URL are set.
 * An engine that is not configured is listed all the same, with `skip` saying why, so its
 * tests show as skipped with that reason instead of not existing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createLogger } from '../../src/log/index.ts';
import {
  createMemoryHotState,
  type Database,
  type HotState,
  openPglite,
  openPostgres,
  openRedisHotState,
} from '../../src/store/index.ts';

export const quietLogger = createLogger('silent');

export interface Opened<T> {
  value: T;
  dispose(): Promise<void>;
}

export interface DatabaseEngine {
  name: 'pglite' | 'postgres';
  /** Why this engine's tests do not run here, or false: `describe`'s `skip` option. */
  skip: string | false;
  open(): Promise<Opened<Database>>;
}

export interface HotStateEngine {
  name: 'memory' | 'redis';
  skip: string | false;
  open(): Promise<Opened<HotState>>;
}

/**
 * `skip` for tests that need outside services: false when every variable is set, else the
 * reason the runner prints. (CI sets both.)
 */
export function needs(...variables: ('DATABASE_URL' | 'REDIS_URL')[]): string | false {
  const missing = variables.filter((name) => !process.env[name]);
  return missing.length === 0 ? false : `needs ${missing.join(' and ')}`;
}

/** The value of a variable that `needs` has vouched for. */
export function required(name: 'DATABASE_URL' | 'REDIS_URL'): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

export const databaseEngines: DatabaseEngine[] = [
  {
    name: 'pglite',
    skip: false,
    async open() {
      const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-pglite-'));
      const db = await openPglite(dir);
      return {
        value: db,
        async dispose() {
          await db.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: needs('DATABASE_URL'),
    async open() {
      const fresh = await createScratchDatabase(required('DATABASE_URL'));
      const db = await openPostgres(fresh.url, quietLogger);
      return {
        value: db,
        async dispose() {
          await db.close();
          await fresh.drop();
        },
      };
    },
  },
];

export const hotStateEngines: HotStateEngine[] = [
  {
    name: 'memory',
    skip: false,
    async open() {
      const hot = createMemoryHotState();
      return { value: hot, dispose: () => hot.close() };
    },
  },
  {
    name: 'redis',
    skip: needs('REDIS_URL'),
    async open() {
      const url = required('REDIS_URL');
      const prefix = `ipcola-test:${randomBytes(6).toString('hex')}:`;
      const hot = await openRedisHotState(url, quietLogger, { prefix });
      return {
        value: hot,
        async dispose() {
          await hot.close();
          await deleteRedisKeys(url, prefix);
        },
      };
    },
  },
];

/** `count` hot states on one Redis prefix: that many instances of one deployment. */
export async function openSharedRedisHotStates(count: number): Promise<Opened<HotState[]>> {
  const url = required('REDIS_URL');
  const prefix = `ipcola-test:${randomBytes(6).toString('hex')}:`;
  const hots: HotState[] = [];
  for (let i = 0; i < count; i++) {
    hots.push(await openRedisHotState(url, quietLogger, { prefix }));
  }
  return {
    value: hots,
    async dispose() {
      await Promise.all(hots.map((hot) => hot.close()));
      await deleteRedisKeys(url, prefix);
    },
  };
}

/** A new, empty PostgreSQL database next to the one in baseUrl; drop() removes it. */
export async function createScratchDatabase(
  baseUrl: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ipcola_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Polls until check() is true; fails after timeoutMs. For conditions that only time brings. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every migration in `migrations/`, in order: what a fresh database has applied. */
export const MIGRATION_VERSIONS = [
  '0001_initial',
  '0002_settings_and_sessions',
  '0003_upstream_nodes',
  '0004_usage_batches',
  '0005_key_rotation',
  '0006_leases',
  '0007_idempotency_keys',
  '0008_usage_country',
  '0009_proxy_only_keys_and_passwordless_cidrs',
  '0010_money',
  '0011_customer_webhooks',
  '0012_stripe_events',
  '0013_payouts',
  '0014_auto_topup_and_balance_alerts',
  '0015_refunds_disputes_and_postpaid',
  '0016_late_payment_failures',
];

/** Where a spawned server keeps its data: an embedded database, or a scratch PostgreSQL one. */
export interface ServerStore {
  name: string;
  skip: string | false;
  setUp(): Promise<{ env: Record<string, string>; dispose(): Promise<void> }>;
}

export const serverStores: ServerStore[] = [
  {
    name: 'embedded',
    skip: false,
    async setUp() {
      const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-server-'));
      return {
        env: { DATA_DIR: path.join(dir, 'data') },
        dispose: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'PostgreSQL',
    skip: needs('DATABASE_URL'),
    async setUp() {
      const scratch = await createScratchDatabase(required('DATABASE_URL'));
      return { env: { DATABASE_URL: scratch.url }, dispose: () => scratch.drop() };
    },
  },
];
