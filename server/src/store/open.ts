/**
 * Opening the stores the configuration names: PostgreSQL or PGlite under the data
 * directory, Redis or in-process hot state. A store that cannot be reached stops
 * start-up with one line naming its variable and why, never the credentials.
 */
import { ConfigError, redactUrl } from '../config/index.ts';
import type { Logger } from '../log/index.ts';
import { claimDataDir } from './data-dir.ts';
import type { Database } from './database.ts';
import { deploymentName } from './deployment.ts';
import type { HotState } from './hot-state.ts';
import { createMemoryHotState } from './memory-hot-state.ts';
import { migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { openRedisHotState } from './redis-hot-state.ts';

export interface StoreSettings {
  readonly databaseUrl: string | undefined;
  readonly redisUrl: string | undefined;
  readonly dataDir: string;
}

/**
 * The database, migrated, and hot state. Each store's close is handed to `keep` as soon
 * as the store is open, so that a later failure leaves the caller what closes it.
 */
export async function openStores(
  settings: StoreSettings,
  logger: Logger,
  keep: (close: () => Promise<void>) => void,
): Promise<{ database: Database; hotState: HotState }> {
  const { database, close } = await openDatabase(settings, logger);
  keep(close);
  const applied = await migrate(database);
  logger.info(
    { engine: database.engine, applied },
    `database ready, ${applied.length} migration(s) applied`,
  );
  const hotState = await openHotState(settings, logger, await deploymentName(database));
  keep(() => hotState.close());
  return { database, hotState };
}

/** The database, and what closes it (and releases the data directory when embedded). */
export async function openDatabase(
  settings: StoreSettings,
  logger: Logger,
): Promise<{ database: Database; close(): Promise<void> }> {
  if (settings.databaseUrl) {
    let database: Database;
    try {
      database = await openPostgres(settings.databaseUrl, logger.child({ role: 'store' }));
    } catch (error) {
      throw new ConfigError(
        'DATABASE_URL',
        `cannot connect to ${target(settings.databaseUrl)} (${connectFailure(error)})`,
      );
    }
    return { database, close: () => database.close() };
  }
  const release = await claimDataDir(settings.dataDir);
  try {
    const database = await openPglite(settings.dataDir);
    return {
      database,
      async close() {
        await database.close();
        await release();
      },
    };
  } catch (error) {
    await release();
    throw error;
  }
}

export async function openHotState(
  settings: StoreSettings,
  logger: Logger,
  deployment: string,
): Promise<HotState> {
  if (!settings.redisUrl) return createMemoryHotState();
  try {
    return await openRedisHotState(settings.redisUrl, logger.child({ role: 'store' }), {
      prefix: `ipcola:${deployment}:`,
    });
  } catch (error) {
    throw new ConfigError(
      'REDIS_URL',
      `cannot connect to ${target(settings.redisUrl)} (${connectFailure(error)})`,
    );
  }
}

/** host:port/path of a URL, without credentials. */
function target(url: string): string {
  const parsed = new URL(redactUrl(url));
  return `${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

const PG_FAILURES: Record<string, string> = {
  '3D000': 'database does not exist',
  '28P01': 'password authentication failed',
  '28000': 'authentication rejected',
  '57P03': 'the server is starting up or shutting down',
  '53300': 'too many connections',
};

function connectFailure(error: unknown): string {
  const failure = error as NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] };
  const code = failure.code ?? failure.errors?.[0]?.code;
  if (code && PG_FAILURES[code]) return PG_FAILURES[code];
  if (code) return code;
  return 'no answer in time';
}
