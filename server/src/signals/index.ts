/**
 * SIGINT and SIGTERM stop the server and exit: 0 once it stopped, 1 when stopping failed
 * or outlasted the grace period by 5 s. A second signal exits at once.
 */
import type { Logger } from '../log/index.ts';

export interface Stoppable {
  stop(): Promise<void>;
}

export interface SignalHandling {
  /** What a signal stops from now on; before it is given, a signal is only remembered. */
  serve(server: Stoppable): void;
  /** When a signal came before now: stops what is served, exits, and answers true. */
  stopIfSignalled(): boolean;
}

/** Installed before start-up, so that a signal during start-up still shuts down cleanly. */
export function stopOnSignals(
  logger: Logger,
  graceMs: number,
  options: {
    /**
     * A cluster worker: the primary sends this message instead of signals, and a lost
     * primary stops the worker too; the signals themselves (a terminal's Ctrl-C reaches
     * the whole process group) are left to the primary.
     */
    fromPrimary?: string | undefined;
  } = {},
): SignalHandling {
  let server: Stoppable | undefined;
  let signalled = false;
  const stopAndExit = (running: Stoppable) => {
    const deadline = setTimeout(() => {
      logger.error('shutdown took too long: exiting');
      logger.flush();
      process.exit(1);
    }, graceMs + 5_000);
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
  const { fromPrimary } = options;
  if (fromPrimary) {
    const ignore = () => {};
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    process.on('message', (message) => {
      if (message === fromPrimary && !signalled) onSignal('SIGTERM');
    });
    process.on('disconnect', () => {
      if (!signalled) onSignal('SIGTERM');
    });
  } else {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return {
    serve(running) {
      server = running;
    },
    stopIfSignalled() {
      if (!signalled || !server) return false;
      stopAndExit(server);
      return true;
    },
  };
}
