/**
 * 8. RSS at rest: our server started as `npm start` starts it, alone on the proxy core,
 * with an empty DATA_DIR (embedded: PGlite and in-process hot state), and again on
 * PostgreSQL and Redis (a scratch database, dropped afterwards). Read once start-up is
 * over and two full collections ran (gc-on-signal; the lowest of five readings), so that
 * the figure does not depend on when V8's memory reducer gets round to it (about a
 * minute after start-up here).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Measurement, RunContext } from '../lib/context.ts';
import { log, sleep } from '../lib/context.ts';
import { collectGarbage, procStats, startServer } from '../lib/processes.ts';
import type { RestResult } from '../lib/report.ts';

export const name = 'rest';

/** Where the PostgreSQL+Redis figure's stores are; unset: this machine's defaults. */
const POSTGRES =
  process.env.IPCOLA_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.IPCOLA_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function restOf(env: NodeJS.ProcessEnv): Promise<RestResult> {
  const started = await startServer({ env });
  try {
    // Let the start-up's timers and first sweeps run before reading.
    await sleep(5_000);
    // The lowest of five readings: whether a collection also shrinks V8's young
    // generation varies (up to 30 MB of difference between two runs otherwise).
    let best: RestResult | undefined;
    for (let i = 0; i < 5; i++) {
      const memory = await collectGarbage(started.server);
      await sleep(500);
      const { rssBytes } = await procStats(started.server.pid);
      if (!best || rssBytes < best.rssBytes) {
        best = {
          rssBytes,
          heapUsedBytes: memory?.heapUsed ?? Number.NaN,
          heapTotalBytes: memory?.heapTotal ?? Number.NaN,
          externalBytes: memory?.external ?? Number.NaN,
        };
      }
      await sleep(2_000);
    }
    return best as RestResult;
  } finally {
    await started.stop();
  }
}

/** A scratch database beside POSTGRES; null when PostgreSQL does not answer. */
async function scratchDatabase(): Promise<{ url: string; drop(): Promise<void> } | null> {
  const database = `ipcola_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES, connectionTimeoutMillis: 3_000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
  } catch {
    return null;
  } finally {
    await admin.end().catch(() => {});
  }
  const url = new URL(POSTGRES);
  url.pathname = `/${database}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

export async function run({ results, warn }: RunContext): Promise<void> {
  results.rest.embedded = await restOf({});
  log(`rest: embedded ${(results.rest.embedded.rssBytes / 2 ** 20).toFixed(0)} MB RSS`);
  const scratch = await scratchDatabase();
  if (!scratch) {
    warn(`rest: PostgreSQL at ${new URL(POSTGRES).host} does not answer; skipped that figure`);
    return;
  }
  try {
    results.rest.postgres = await restOf({ DATABASE_URL: scratch.url, REDIS_URL: REDIS });
    log(`rest: PostgreSQL+Redis ${(results.rest.postgres.rssBytes / 2 ** 20).toFixed(0)} MB RSS`);
  } catch (error) {
    warn(
      `rest: the server on PostgreSQL+Redis did not start: ${(error as Error).message.slice(0, 300)}`,
    );
  } finally {
    await scratch.drop();
  }
}

export const measurement: Measurement = { name, stage: 'after-subjects', run };
