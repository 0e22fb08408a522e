/**
 * The composition root: the one place that reads the configuration, opens the stores
 * and wires the roles together. Everything else receives what it needs.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { createApiApp } from './api/index.ts';
import { type Config, ConfigError, loadConfig, redactUrl } from './config/index.ts';
import { closeServer, listen } from './listeners/index.ts';
import { createLogger, type Logger } from './log/index.ts';
import {
  claimDataDir,
  createMemoryHotState,
  type Database,
  type HotState,
  MigrationError,
  migrate,
  openPglite,
  openPostgres,
  openRedisHotState,
} from './store/index.ts';

const OPENAPI_DOCUMENT = new URL('../../openapi/openapi.yaml', import.meta.url);

interface RunningServer {
  readonly ports: { api: number };
  stop(): Promise<void>;
}

type Cleanup = () => Promise<void>;

async function start(config: Config, logger: Logger): Promise<RunningServer> {
  const cleanups: Cleanup[] = [];
  const undo = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((error) => logger.error({ err: error }, 'clean-up failed'));
    }
  };

  try {
    const database = await openDatabase(config, logger, cleanups);
    const applied = await migrate(database);
    logger.info(
      { engine: database.engine, applied },
      `database ready, ${applied.length} migration(s) applied`,
    );

    const hotState = await openHotState(config, logger);
    cleanups.push(() => hotState.close());

    const api = createApiApp({
      logger,
      dependencies: { database, hot_state: hotState },
      openapiDocument: await readFile(OPENAPI_DOCUMENT, 'utf8'),
    });
    const apiServer = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, api);
    apiServer.keepAliveTimeout = 5_000;
    const apiPort = await listen(apiServer, 'API_PORT', config.host, config.apiPort);
    cleanups.push(() => closeServer(apiServer, config.shutdownGraceMs));

    let stopping: Promise<void> | undefined;
    return {
      ports: { api: apiPort },
      stop: () => {
        stopping ??= undo();
        return stopping;
      },
    };
  } catch (error) {
    await undo();
    throw error;
  }
}

async function openDatabase(
  config: Config,
  logger: Logger,
  cleanups: Cleanup[],
): Promise<Database> {
  let database: Database;
  if (config.databaseUrl) {
    try {
      database = await openPostgres(config.databaseUrl, logger.child({ role: 'store' }));
    } catch (error) {
      throw new ConfigError(
        'DATABASE_URL',
        `cannot connect to ${target(config.databaseUrl)} (${connectFailure(error)})`,
      );
    }
  } else {
    cleanups.push(await claimDataDir(config.dataDir));
    database = await openPglite(config.dataDir);
  }
  cleanups.push(() => database.close());
  return database;
}

async function openHotState(config: Config, logger: Logger): Promise<HotState> {
  if (!config.redisUrl) return createMemoryHotState();
  try {
    return await openRedisHotState(config.redisUrl, logger.child({ role: 'store' }));
  } catch (error) {
    throw new ConfigError(
      'REDIS_URL',
      `cannot connect to ${target(config.redisUrl)} (${connectFailure(error)})`,
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

function fail(error: unknown): never {
  const line =
    error instanceof ConfigError || error instanceof MigrationError
      ? error.message
      : `unexpected start-up failure: ${(error as Error)?.message ?? String(error)}`;
  process.stderr.write(`ipcola: cannot start: ${line}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  try {
    parseArgs({ args: process.argv.slice(2), options: {}, strict: true });
  } catch (error) {
    fail(new ConfigError('arguments', (error as Error).message));
  }

  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    fail(error);
  }
  const logger = createLogger(config.logLevel);

  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    logger.flush();
    process.exit(1);
  });

  let server: RunningServer | undefined;
  let signalled = false;
  const stopAndExit = (running: RunningServer) => {
    const deadline = setTimeout(() => {
      logger.error('shutdown took too long: exiting');
      logger.flush();
      process.exit(1);
    }, config.shutdownGraceMs + 5_000);
    deadline.unref();
    running.stop().then(
      () => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      },
      (error) => {
        logger.error({ err: error }, 'shutdown failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  // Installed before start-up so that a signal during start-up still shuts down cleanly.
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      logger.flush();
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'shutting down');
    if (server) stopAndExit(server);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    server = await start(config, logger);
  } catch (error) {
    logger.flush();
    fail(error);
  }
  if (signalled) {
    stopAndExit(server);
    return;
  }
  logger.info(
    { host: config.host, ports: server.ports },
    `IPCola is up: API http://${config.host}:${server.ports.api}`,
  );
}

await main();
