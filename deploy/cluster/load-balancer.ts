/**
 * HAProxy from the operating system in front of the instances: the generated
 * configuration in the cluster's directory, run in the foreground, its servers' health
 * read from its stats socket.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Ports, Role, Topology } from '../topology.ts';
import { haproxyConfig } from './haproxy-config.ts';
import { type Spawned, spawnLogged } from './process.ts';

export type FrontendRole = Exclude<Role, 'hub'>;

/** A server's state as HAProxy's health checks see it: `UP`, `DOWN`, `UP 1/2`, ... */
export type ServerStates = Record<FrontendRole, Record<string, string>>;

export interface LoadBalancer {
  readonly ports: Record<FrontendRole, number>;
  readonly configFile: string;
  readonly pid: number | undefined;
  /** What the health checks say of each instance, per frontend. */
  states(): Promise<ServerStates>;
  /** Resolves once `accept` holds for the states; fails after timeoutMs. */
  waitFor(
    accept: (states: ServerStates) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void>;
  /**
   * An instance's administrative state on every frontend: `drain` takes no new
   * connections and lets open ones finish, `maint` takes none at all, `ready` takes it
   * back (once its health checks pass). The rolling-restart step an operator takes.
   */
  setState(instance: string, state: 'ready' | 'drain' | 'maint'): Promise<void>;
  stop(): Promise<number | NodeJS.Signals>;
}

export async function startLoadBalancer(options: {
  topology: Topology;
  ports: Record<FrontendRole, number>;
  instancePorts: Record<string, Ports>;
  dir: string;
}): Promise<LoadBalancer> {
  const configFile = path.join(options.dir, 'haproxy.cfg');
  const statsSocket = path.join(options.dir, 'haproxy.sock');
  await writeFile(
    configFile,
    haproxyConfig(options.topology, {
      bindHost: '127.0.0.1',
      source: options.topology.loadBalancer.localIp,
      frontendPorts: options.ports,
      serverAddress: (instance, role) => {
        const ports = options.instancePorts[instance];
        if (!ports) throw new Error(`no ports for ${instance}`);
        return `127.0.0.1:${ports[role]}`;
      },
      statsSocket,
    }),
  );
  // -db: stay in the foreground, so that the cluster owns the process and its signals.
  const haproxy: Spawned = spawnLogged('haproxy', ['-db', '-f', configFile], {
    cwd: options.dir,
    env: { PATH: process.env.PATH },
    logFile: path.join(options.dir, 'haproxy.log'),
  });
  const balancer: LoadBalancer = {
    ports: options.ports,
    configFile,
    get pid() {
      return haproxy.child.pid;
    },
    states: () => readStates(statsSocket),
    async setState(instance, state) {
      for (const frontend of options.topology.loadBalancer.frontends) {
        const answer = await command(
          statsSocket,
          `set server ${frontend.role}/${instance} state ${state}`,
        );
        if (answer.trim() !== '') throw new Error(`haproxy: ${answer.trim()}`);
      }
    },
    async waitFor(accept, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      let last: ServerStates | string = 'nothing yet';
      for (;;) {
        if (!haproxy.running) {
          const log = await readFile(path.join(options.dir, 'haproxy.log'), 'utf8');
          throw new Error(`haproxy exited (${await haproxy.exited}): ${log.trim()}`);
        }
        try {
          last = await readStates(statsSocket);
          if (accept(last)) return;
        } catch (error) {
          last = (error as Error).message;
        }
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    stop: () => haproxy.stop('SIGTERM'),
  };
  return balancer;
}

/** Fails with what to do when there is no `haproxy` to run. */
export async function checkHaproxy(): Promise<void> {
  try {
    await promisify(execFile)('haproxy', ['-v']);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(
      missing
        ? 'haproxy is not installed (Debian: apt-get install -y haproxy)'
        : `haproxy -v failed: ${(error as Error).message}`,
    );
  }
}

/** Every server of every frontend's backend is UP. */
export const allUp = (states: ServerStates): boolean =>
  Object.values(states).every((servers) => Object.values(servers).every((state) => state === 'UP'));

/** One command on the stats socket, and its whole answer. */
function command(socketPath: string, text: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = createConnection(socketPath);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(`${text}\n`));
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

/** `show stat` on the stats socket: CSV, one row per frontend, server and backend. */
async function readStates(socketPath: string): Promise<ServerStates> {
  const csv = await command(socketPath, 'show stat');
  const [header, ...rows] = csv.trim().split('\n');
  const columns = (header ?? '').replace(/^# /, '').split(',');
  const at = (name: string) => columns.indexOf(name);
  const states: ServerStates = { api: {}, proxy: {}, socks: {} };
  for (const row of rows) {
    const cells = row.split(',');
    const backend = cells[at('pxname')] as FrontendRole;
    const server = cells[at('svname')] ?? '';
    if (!(backend in states) || server === 'FRONTEND' || server === 'BACKEND') continue;
    states[backend][server] = cells[at('status')] ?? '';
  }
  return states;
}
