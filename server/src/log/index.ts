import { randomBytes } from 'node:crypto';
import { type Logger, pino } from 'pino';
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
