/**
 * One child process of the cluster: its output appended to a log file (kept across
 * restarts), its JSON log lines parsed and the latest kept in memory for waiting on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { createWriteStream } from 'node:fs';

/** Lines kept in memory: enough to wait on start-up events, bounded for a long run. */
const KEPT_LINES = 2_000;

export type LogLine = Record<string, unknown>;

export interface Spawned {
  readonly child: ChildProcess;
  /** The latest JSON log lines (other output as `{ raw }`). */
  readonly lines: LogLine[];
  /** Emits `line` for each line as it comes. */
  readonly events: EventEmitter;
  /** Resolves with the exit code, or the signal that ended it. */
  readonly exited: Promise<number | NodeJS.Signals>;
  readonly running: boolean;
  /** Sends a signal unless it has exited; resolves once it has. */
  stop(signal: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export function spawnLogged(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; logFile: string },
): Spawned {
  const log = createWriteStream(options.logFile, { flags: 'a' });
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const events = new EventEmitter();
  let pending = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    log.write(chunk);
    pending += chunk;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const text = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      if (lines.length > KEPT_LINES) lines.splice(0, lines.length - KEPT_LINES);
      events.emit('line', line);
      newline = pending.indexOf('\n');
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => log.write(chunk));
  const exited = once(child, 'exit').then(([code, signal]) => {
    log.end();
    return (code ?? signal) as number | NodeJS.Signals;
  });
  // A failed spawn (missing binary) also ends in 'exit'; keep 'error' from throwing.
  child.on('error', (error) => log.write(`spawn failed: ${error.message}\n`));
  return {
    child,
    lines,
    events,
    exited,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Resolves with the first line (already kept or still to come) that `match` accepts. */
export function waitForLine(
  spawned: Spawned,
  match: (line: LogLine) => boolean,
  timeoutMs: number,
  what: string,
): Promise<LogLine> {
  const seen = spawned.lines.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      spawned.events.off('line', onLine);
    };
    const onLine = (line: LogLine) => {
      if (!match(line)) return;
      done();
      resolve(line);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    spawned.events.on('line', onLine);
    void spawned.exited.then((how) => {
      done();
      reject(new Error(`exited (${how}) while waiting for ${what}`));
    });
  });
}
