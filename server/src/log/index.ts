import { randomBytes } from 'node:crypto';
import { type LogFn, type Logger, pino } from 'pino';
import type { LogLevel } from '../config/index.ts';

export type { Logger } from 'pino';

// Connection ids are per-process counters behind a random tag: unique across instances
// for log correlation, without drawing entropy on every accepted connection.
const processTag = randomBytes(4).toString('hex');
let connections = 0;

/** A new id for one connection's log lines. */
export function newConnectionId(): string {
  connections++;
  return `${processTag}-${connections.toString(36)}`;
}

/** Paths whose values never reach a log line. */
const REDACT = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'password',
  'secret',
  'token',
  '*.password',
  '*.secret',
  '*.token',
];

/** The process logger: JSON lines on stdout, credentials redacted. */
export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ipcola' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** What one connection logs with. */
export type ConnectionLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/**
 * A child logger for one connection, made when it first logs at an enabled level: most
 * connections log nothing at the default level, and a pino child (with its bindings, the
 * connection id and the client address) cost about 6 µs of every new tunnel (bench
 * profile of the new-tunnel path, 2026-12-06).
 */
export function lazyChild(parent: Logger, bindings: () => Record<string, unknown>): ConnectionLog {
  let child: Logger | undefined;
  const method = (level: keyof ConnectionLog): LogFn =>
    ((...args: unknown[]) => {
      if (!parent.isLevelEnabled(level)) return;
      child ??= parent.child(bindings());
      (child[level] as (...a: unknown[]) => void)(...args);
    }) as LogFn;
  return {
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
  };
}
