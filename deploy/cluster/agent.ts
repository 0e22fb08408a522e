/**
 * One exit-node agent of the cluster: the real agent program dialling its home instance's
 * hub (the other instances' when it is gone), sending from a loopback exit IP. It can be
 * stopped and started again with its token.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentSpec } from '../topology.ts';
import { type Spawned, spawnLogged } from './process.ts';

const AGENT_DIR = fileURLToPath(new URL('../../agent/', import.meta.url));

export interface Agent {
  readonly spec: AgentSpec;
  readonly nodeId: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** SIGTERM drains (open connections get up to 30 s); SIGKILL is a crash. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  /** Starts the agent again; it connects on its own (wait on the instance). */
  start(): void;
}

export function createAgent(options: {
  spec: AgentSpec;
  node: { id: string; token: string };
  /** The hubs' ports, its home instance's first. */
  hubPorts: readonly number[];
  /** Targets the agent may reach although the exit policy refuses them (loopback here). */
  allowTargets: readonly string[];
  env: NodeJS.ProcessEnv;
  dir: string;
}): Agent {
  const { spec } = options;
  let current: Spawned | undefined;
  return {
    spec,
    nodeId: options.node.id,
    get running() {
      return current?.running ?? false;
    },
    get pid() {
      return current?.child.pid;
    },
    stop: (signal = 'SIGTERM') => current?.stop(signal) ?? Promise.resolve(0),
    start() {
      if (current?.running) throw new Error(`${spec.name} is already running`);
      current = spawnLogged(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/main.ts',
          '--hub',
          options.hubPorts.map((port) => `127.0.0.1:${port}`).join(','),
          '--country',
          spec.country,
          '--exit-ip',
          spec.exitIp,
          ...options.allowTargets.flatMap((cidr) => ['--allow-target', cidr]),
          '--log-level',
          'warn',
        ],
        {
          cwd: AGENT_DIR,
          // The token in the environment keeps it out of the process list.
          env: { ...options.env, IPCOLA_NODE_TOKEN: options.node.token },
          logFile: path.join(options.dir, `${spec.name}.log`),
        },
      );
    },
  };
}
