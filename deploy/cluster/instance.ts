/**
 * One server instance of the cluster: the real server process (`node --import tsx
 * server/src/main.ts`, as its systemd unit and container run it) on fixed ports, which
 * can be killed, stopped and started again on the same ports.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Ports } from '../topology.ts';
import { type LogLine, type Spawned, spawnLogged, waitForLine } from './process.ts';

const SERVER_DIR = fileURLToPath(new URL('../../server/', import.meta.url));

/** Migrations and a cold tsx cache on a busy two-core machine: a bound, not a wait. */
const START_MS = 90_000;

export interface Instance {
  readonly name: string;
  readonly ports: Ports;
  /** Where its output goes, across restarts. */
  readonly logFile: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** The latest JSON log lines of the current process. */
  lines(): LogLine[];
  /** Sends a signal (SIGKILL by default) and resolves with the exit code or signal. */
  kill(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  /** SIGTERM: the server drains and must exit 0. */
  stop(): Promise<number | NodeJS.Signals>;
  /** Starts it again on the same ports; resolves once /readyz answers 200. */
  start(): Promise<void>;
  /** Whether a node is up on this instance's hub now (its latest `node up` or `node down`). */
  hasNode(nodeId: string): boolean;
  /** Resolves once the node is up on this instance's hub. */
  waitForNode(nodeId: string, timeoutMs: number): Promise<void>;
}

export function createInstance(options: {
  name: string;
  ports: Ports;
  env: NodeJS.ProcessEnv;
  dir: string;
}): Instance {
  const logFile = path.join(options.dir, `${options.name}.log`);
  let current: Spawned | undefined;
  /** Each node's latest state on the current process's hub, from its log. */
  let nodes = new Map<string, boolean>();

  const instance: Instance = {
    name: options.name,
    ports: options.ports,
    logFile,
    get running() {
      return current?.running ?? false;
    },
    get pid() {
      return current?.child.pid;
    },
    lines: () => current?.lines ?? [],
    kill: (signal = 'SIGKILL') => current?.stop(signal) ?? Promise.resolve(0),
    stop: () => instance.kill('SIGTERM'),
    async start() {
      if (current?.running) throw new Error(`${options.name} is already running`);
      current = spawnLogged(
        process.execPath,
        ['--initial-old-space-size=128', '--import', 'tsx', 'src/main.ts'],
        {
          cwd: SERVER_DIR,
          env: {
            ...options.env,
            API_PORT: String(options.ports.api),
            PROXY_PORT: String(options.ports.proxy),
            SOCKS_PORT: String(options.ports.socks),
            HUB_PORT: String(options.ports.hub),
            DATA_DIR: path.join(options.dir, options.name),
          },
          logFile,
        },
      );
      const states = new Map<string, boolean>();
      nodes = states;
      current.events.on('line', (line: LogLine) => {
        if (typeof line.nodeId !== 'string') return;
        if (line.msg === 'node up') states.set(line.nodeId, true);
        if (line.msg === 'node down') states.set(line.nodeId, false);
      });
      try {
        await waitForLine(
          current,
          (line) => line.ports !== undefined,
          START_MS,
          `${options.name} to listen (log: ${logFile})`,
        );
        await untilReady(options.ports.api, START_MS);
      } catch (error) {
        await current.stop('SIGKILL');
        throw error;
      }
    },
    hasNode: (nodeId) => nodes.get(nodeId) === true,
    async waitForNode(nodeId, timeoutMs) {
      if (!current) throw new Error(`${options.name} is not running`);
      if (instance.hasNode(nodeId)) return;
      await waitForLine(
        current,
        (line) => line.nodeId === nodeId && instance.hasNode(nodeId),
        timeoutMs,
        `node ${nodeId} on ${options.name}`,
      );
    },
  };
  return instance;
}

/** Polls /readyz until it answers 200: the database and Redis answer this instance. */
async function untilReady(apiPort: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await fetch(`http://127.0.0.1:${apiPort}/readyz`).then(
      (response) => response.arrayBuffer().then(() => response.status),
      () => 0,
    );
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`/readyz on port ${apiPort} answered ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
