/**
 * A real proxy network for end-to-end tests: the server process, exit-node agents run by
 * the agent CLI on 127.0.0.12-14, an account with a key, and a target that answers with
 * the address it was reached from.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SocksClient } from 'socks';
import { eventually } from './engines.ts';
import { type ServerProcess, serverEnv, signedInApi, startServer } from './server-process.ts';
import { type TcpConnection, tcpConnections } from './tcp-connections.ts';

const AGENT_DIR = fileURLToPath(new URL('../../../agent/', import.meta.url));

export interface ExitSpec {
  ip: string;
  country: string;
  /** The agent's `--allow-target` CIDRs; default 127.0.0.1/32 (the whoami target). */
  allowTargets?: string[];
  /** More agent options, e.g. `['--region', 'bavaria']`. */
  args?: string[];
  /** The node's type, registered and announced (`--type`); residential by default. */
  type?: 'residential' | 'datacenter' | 'mobile';
  /** Where the agent dials (`--hub`); the server's hub port by default. */
  hub?: string;
}

/** How long a server process may take to start (PGlite migrations on a busy machine). */
const SERVER_START_MS = 60_000;

export interface ProxyNetwork {
  /** The running server process; replaced by restartServer(). */
  server: ServerProcess;
  /** The same across restartServer(). */
  ports: { api: number; proxy: number; socks: number; hub: number };
  /** The server's DATA_DIR (its embedded database unless DATABASE_URL is given). */
  dataDir: string;
  key: { id: string; secret: string };
  /** `http://127.0.0.1:PORT` of the whoami target. */
  target: string;
  targetPort: number;
  agents: Map<string, ChildProcess>;
  /** Proxy URL for a username suffix such as `-country-de`. */
  proxyUrl(params?: string): string;
  /** A SOCKS5 CONNECT to the whoami target with the key (and a username suffix), from `localAddress`. */
  socks(params?: string, localAddress?: string): ReturnType<typeof SocksClient.createConnection>;
  api(pathname: string, init?: RequestInit): Promise<Response>;
  stopAgent(ip: string, signal?: NodeJS.Signals): Promise<void>;
  /**
   * Kills the agent of this exit IP and starts it again with the same node token and
   * options (no API call: it works while the database is down); resolves once the hub
   * announces the node again.
   */
  restartAgent(ip: string): Promise<void>;
  /** Registers one more node and starts its agent; resolves once the hub announces it. */
  startAgent(exit: ExitSpec): Promise<{ nodeId: string }>;
  /**
   * Stops the server with SIGTERM (it must exit 0), or kills it with SIGKILL, and starts
   * it again on the same ports and DATA_DIR, so that keys, node tokens and API sessions
   * still verify. Does not wait for the agents to come back. `stopped` runs while it is
   * down (an admin command on its embedded database).
   */
  restartServer(signal?: 'SIGTERM' | 'SIGKILL', stopped?: () => Promise<void>): Promise<void>;
  /** Connections customers have open to the gateway (its HTTP proxy and SOCKS5 ports). */
  clientConnections(): Promise<TcpConnection[]>;
  /** Connections the exit nodes have open to targets on `port`. */
  egressConnections(port: number): Promise<TcpConnection[]>;
  close(): Promise<void>;
}

export async function startProxyNetwork(
  exits: ExitSpec[],
  env: Record<string, string> = {},
): Promise<ProxyNetwork> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-e2e-'));
  const target = await startWhoami();
  const server = await startServer(serverEnv({ DATA_DIR: dataDir, ...env }), [], SERVER_START_MS);
  const ports = { ...server.ports } as ProxyNetwork['ports'];
  const agents = new Map<string, ChildProcess>();
  /** How to start each exit IP's agent again, with the token it was registered with. */
  const respawns = new Map<string, () => ChildProcess>();
  const nodeIds = new Map<string, string>();

  const api = await signedInApi(ports.api, `e2e-${Date.now()}@example.com`);
  // Also a bearer token: some tests call the API with it (leases).
  const key = (await (
    await api('/v1/keys', { method: 'POST', body: JSON.stringify({ scopes: ['proxy', 'api'] }) })
  ).json()) as {
    id: string;
    secret: string;
  };

  const network: ProxyNetwork = {
    async startAgent(exit) {
      const nodeId = await spawnAgent(exit);
      await eventually(
        () => network.server.logs.some((line) => line.msg === 'node up' && line.nodeId === nodeId),
        60_000,
        `node ${nodeId} to connect`,
      );
      return { nodeId };
    },
    server,
    ports,
    dataDir,
    key,
    target: `http://127.0.0.1:${target.port}`,
    targetPort: target.port,
    agents,
    proxyUrl: (params = '') => `http://${key.id}${params}:${key.secret}@127.0.0.1:${ports.proxy}`,
    socks: (params = '', localAddress = undefined) =>
      SocksClient.createConnection({
        proxy: {
          host: '127.0.0.1',
          port: ports.socks,
          type: 5,
          userId: `${key.id}${params}`,
          password: key.secret,
        },
        command: 'connect',
        destination: { host: '127.0.0.1', port: target.port },
        timeout: 10_000,
        ...(localAddress ? { socket_options: { localAddress } } : {}),
      } as Parameters<typeof SocksClient.createConnection>[0]),
    api,
    async stopAgent(ip, signal = 'SIGKILL') {
      const agent = agents.get(ip);
      if (!agent || agent.exitCode !== null || agent.signalCode !== null) return;
      const exited = once(agent, 'exit');
      agent.kill(signal);
      await exited;
    },
    async restartAgent(ip) {
      const respawn = respawns.get(ip);
      if (!respawn) throw new Error(`no agent for ${ip}`);
      await network.stopAgent(ip, 'SIGKILL');
      const nodeUps = () =>
        network.server.logs.filter(
          (line) => line.msg === 'node up' && line.nodeId === nodeIds.get(ip),
        ).length;
      const before = nodeUps();
      agents.set(ip, respawn());
      await eventually(() => nodeUps() > before, 60_000, `the agent of ${ip} to come back`);
    },
    async restartServer(signal = 'SIGTERM', stopped) {
      const code = await network.server.stop(signal);
      if (signal === 'SIGTERM' && code !== 0) {
        throw new Error(`the server exited with ${code} on SIGTERM`);
      }
      await stopped?.();
      const samePorts = {
        API_PORT: String(ports.api),
        PROXY_PORT: String(ports.proxy),
        SOCKS_PORT: String(ports.socks),
        HUB_PORT: String(ports.hub),
      };
      network.server = await startServer(
        serverEnv({ DATA_DIR: dataDir, ...env, ...samePorts }),
        [],
        SERVER_START_MS,
      );
    },
    async clientConnections() {
      const pid = network.server.child.pid;
      if (pid === undefined) return [];
      return (await tcpConnections(pid)).filter(
        (connection) =>
          connection.localPort === ports.proxy || connection.localPort === ports.socks,
      );
    },
    async egressConnections(port) {
      const perAgent = await Promise.all(
        [...agents.values()].map((agent) =>
          agent.pid === undefined ? [] : tcpConnections(agent.pid),
        ),
      );
      return perAgent.flat().filter((connection) => connection.remotePort === port);
    },
    async close() {
      await Promise.all([...agents.keys()].map((ip) => network.stopAgent(ip, 'SIGKILL')));
      await network.server.stop();
      await new Promise((resolve) => target.server.close(resolve));
      await rm(dataDir, { recursive: true, force: true });
    },
  };

  async function spawnAgent(exit: ExitSpec): Promise<string> {
    const node = (await (
      await api('/v1/nodes', {
        method: 'POST',
        body: JSON.stringify(exit.type ? { type: exit.type } : {}),
      })
    ).json()) as { id: string; token: string };
    const start = () =>
      spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/main.ts',
          '--hub',
          exit.hub ?? `127.0.0.1:${ports.hub}`,
          '--country',
          exit.country,
          '--exit-ip',
          exit.ip,
          ...(exit.allowTargets ?? ['127.0.0.1/32']).flatMap((cidr) => ['--allow-target', cidr]),
          ...(exit.type ? ['--type', exit.type] : []),
          ...(exit.args ?? []),
          '--log-level',
          'warn',
        ],
        { cwd: AGENT_DIR, env: { ...process.env, IPCOLA_NODE_TOKEN: node.token }, stdio: 'ignore' },
      );
    agents.set(exit.ip, start());
    respawns.set(exit.ip, start);
    nodeIds.set(exit.ip, node.id);
    return node.id;
  }
  try {
    for (const exit of exits) await spawnAgent(exit);
    // A bound, not a wait: agents usually connect within a few seconds, but on a loaded
    // two-core machine three Node processes compiling TypeScript at once can take 20.
    await eventually(
      () => server.logs.filter((line) => line.msg === 'node up').length >= exits.length,
      60_000,
      'every exit node to connect',
    );
  } catch (error) {
    await network.close();
    throw error;
  }
  return network;
}

async function startWhoami(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === '/drip') {
      // A download that never ends by itself: 64 KB every 10 ms until the client goes.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const timer = setInterval(() => res.write(chunk), 10);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (req.url?.startsWith('/stream/')) {
      // N bytes as fast as the reader takes them (honouring back-pressure, never buffering).
      let left = Number(req.url.slice('/stream/'.length));
      res.writeHead(200, { 'content-length': left });
      const chunk = Buffer.alloc(64 * 1024, 0x63);
      const pump = () => {
        while (left > 0) {
          const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= piece.length;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (req.url === '/echo') {
      // The request body exactly as this target read it (the framing it understood).
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => res.end(Buffer.concat(chunks)));
      return;
    }
    if (req.url?.startsWith('/bytes/')) {
      const size = Number(req.url.slice('/bytes/'.length));
      res.writeHead(200, { 'content-length': size });
      res.end(Buffer.alloc(size, 0x61));
      return;
    }
    res.end(`${req.socket.remoteAddress}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}
