/**
 * The server process's life: read the command line and the environment, start one
 * instance (or WORKERS of them sharing the listening ports), stop on signals, and say
 * why in one line when it cannot start. What an instance is made of is main.ts's.
 */
import cluster from 'node:cluster';
import { type Config, ConfigError, loadConfig } from '../config/index.ts';
import { type DemoHost, startDemoOn, wantsDemo } from '../demo.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { stopOnSignals } from '../signals/index.ts';
import { MigrationError } from '../store/index.ts';

export interface RunningInstance extends DemoHost {
  readonly ports: Record<'api' | 'proxy' | 'socks' | 'hub', number>;
}

export type StartInstance = (
  config: Config,
  logger: Logger,
  worker: number,
) => Promise<RunningInstance>;

const STOP_MESSAGE = 'ipcola:stop';

function fail(error: unknown): never {
  const line =
    error instanceof ConfigError || error instanceof MigrationError
      ? error.message
      : `unexpected start-up failure: ${(error as Error)?.message ?? String(error)}`;
  process.stderr.write(`ipcola: cannot start: ${line}\n`);
  process.exit(1);
}

/** Runs the server: this process, or a primary that keeps WORKERS instances running. */
export async function runServer(start: StartInstance): Promise<void> {
  let demo: boolean;
  let config: Config;
  try {
    demo = wantsDemo(process.argv.slice(2));
    config = loadConfig();
    if (demo && config.workers > 1) {
      throw new ConfigError('WORKERS', `--demo runs in one process (WORKERS=${config.workers})`);
    }
  } catch (error) {
    fail(error);
  }
  const logger = createLogger(config.logLevel);
  if (cluster.isPrimary && config.workers > 1) {
    superviseWorkers(config.workers, config.shutdownDelayMs + config.shutdownGraceMs, logger);
    return;
  }
  const worker = cluster.isWorker ? (cluster.worker?.id ?? 1) : 1;
  await runInstance(start, config, worker > 1 ? logger.child({ worker }) : logger, worker, demo);
}

async function runInstance(
  start: StartInstance,
  config: Config,
  logger: Logger,
  worker: number,
  demo: boolean,
): Promise<void> {
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    logger.flush();
    process.exit(1);
  });
  const signals = stopOnSignals(logger, config.shutdownDelayMs + config.shutdownGraceMs, {
    fromPrimary: cluster.isWorker ? STOP_MESSAGE : undefined,
  });

  let server: RunningInstance;
  try {
    server = await start(config, logger, worker);
  } catch (error) {
    logger.flush();
    fail(error);
  }
  signals.serve(server);
  if (demo) {
    try {
      const { dataDir, publicHost, tls } = config;
      server = await startDemoOn(server, { dataDir, publicHost, tls, logger });
      signals.serve(server);
    } catch (error) {
      await server.stop();
      fail(error);
    }
  }
  if (signals.stopIfSignalled()) return;
  const { ports } = server;
  logger.info(
    { host: config.host, ports, tls: config.tls !== undefined },
    `IPCola is up: API http${config.tls ? 's' : ''}://${config.host}:${ports.api}, HTTP proxy ` +
      `${config.host}:${ports.proxy}, SOCKS5 ${config.host}:${ports.socks}, hub ${config.host}:${ports.hub}`,
  );
}

/**
 * The primary of WORKERS processes: it serves nothing itself. Node's cluster module
 * shares the listening ports (the primary accepts and hands connections round-robin);
 * each worker is a full instance with its own hub, joined to the others through Redis
 * like instances on other hosts. A worker that dies is replaced; a signal is passed to
 * every worker, and the primary exits once they all have.
 */
function superviseWorkers(count: number, graceMs: number, logger: Logger): void {
  let stopping = false;
  let failed = false;
  const fork = () => cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (code !== 0) failed = true;
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
      return;
    }
    logger.error({ worker: worker.id, code, signal }, 'a worker died: starting another');
    // A worker that cannot start at all (a bad environment) would be forked for ever.
    if (code === 1 && !started.has(worker.id)) {
      logger.fatal('a worker failed to start: stopping');
      stop('SIGTERM');
      return;
    }
    setTimeout(fork, 1_000).unref();
  });
  const started = new Set<number>();
  cluster.on('listening', (worker) => started.add(worker.id));
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down the workers');
    // By message, not signal: a terminal's Ctrl-C reaches every process of the group, and
    // a worker counts a second signal as "exit now".
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send(STOP_MESSAGE);
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    const deadline = setTimeout(
      () => {
        logger.error('workers took too long to stop: exiting');
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
        process.exit(1);
      },
      graceMs * 5 + 10_000,
    );
    deadline.unref();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  logger.info({ workers: count }, 'starting workers');
  for (let i = 0; i < count; i += 1) fork();
}
