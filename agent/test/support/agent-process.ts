/**
 * Runs the agent CLI (src/main.ts) as a child process, the way operators do, and reads
 * its JSON log lines as they come.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { networkInterfaces } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const AGENT_DIR = fileURLToPath(new URL('../../', import.meta.url));

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface AgentProcess {
  readonly child: ChildProcess;
  /** Every JSON line logged so far, in order. */
  readonly logs: readonly LogLine[];
  /** Resolves with the first line (already logged or to come) that `matches`. */
  waitForLog(matches: (line: LogLine) => boolean, what: string): Promise<LogLine>;
  /** Resolves once the process exited and its output was read to the end. */
  readonly exited: Promise<Exit>;
  /** Everything written to stderr. */
  stderr(): string;
  /** SIGKILL if still running, then wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts `node --import tsx src/main.ts ...args` in agent/. The environment holds only
 * what is given (plus PATH), so that an IPCOLA_NODE_TOKEN of the caller never leaks in.
 */
export function spawnAgent(
  args: readonly string[],
  env: Record<string, string> = {},
): AgentProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: AGENT_DIR,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters = new Set<{
    matches: (line: LogLine) => boolean;
    resolve: (line: LogLine) => void;
  }>();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const stdoutDone = once(child.stdout, 'close');
  createInterface({ input: child.stdout }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 0, msg: text };
    }
    logs.push(line);
    for (const waiter of waiters) {
      if (waiter.matches(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  const exited = (async (): Promise<Exit> => {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    await stdoutDone;
    return { code, signal };
  })();

  const waitForLog = (matches: (line: LogLine) => boolean, what: string): Promise<LogLine> => {
    const seen = logs.find(matches);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = { matches, resolve };
      waiters.add(waiter);
      void exited.then((exit) => {
        if (!waiters.delete(waiter)) return;
        reject(
          new Error(
            `the agent exited (${exit.code ?? exit.signal}) before logging ${what}; stderr: ${stderr}; logs: ${logs.map((l) => l.msg).join(' | ')}`,
          ),
        );
      });
    });
  };

  return {
    child,
    logs,
    waitForLog,
    exited,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** An IPv4 address of TEST-NET-1 (192.0.2.0/24) that this machine does not have. */
export function foreignAddress(): string {
  const local = new Set(
    Object.values(networkInterfaces())
      .flatMap((entries) => entries ?? [])
      .map((entry) => entry.address),
  );
  for (let last = 1; last < 255; last++) {
    const candidate = `192.0.2.${last}`;
    if (!local.has(candidate)) return candidate;
  }
  throw new Error('every address of 192.0.2.0/24 is on this machine');
}
