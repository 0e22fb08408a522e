/**
 * A real IPCola network for the proxy helpers' tests: the server process (its test harness),
 * exit nodes run by the agent program on 127.0.0.12-14, an account with a key, and two
 * whoami targets (http and https with a throw-away CA) that answer with the address they
 * were reached from, i.e. the exit's.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type AgentProcess, spawnAgent } from '@ipcola/agent/testing';
import {
  type ServerProcess,
  type SignedInApi,
  serverEnv,
  signedInApi,
  startServer,
} from '@ipcola/server/testing';
import {
  createProxyHelpers,
  type ProxyHelpers,
  type ProxyHelpersConfig,
} from '../../src/proxy/index.ts';

export interface ExitSpec {
  ip: string;
  country: string;
}

export const DEMO_EXITS: readonly ExitSpec[] = [
  { ip: '127.0.0.12', country: 'de' },
  { ip: '127.0.0.13', country: 'us' },
  { ip: '127.0.0.14', country: 'us' },
];

export interface ProxyNetwork {
  server: ServerProcess;
  ports: { api: number; proxy: number; socks: number; hub: number };
  /** `KEYID.SECRET` of a key with both scopes. */
  apiKey: string;
  key: { id: string; secret: string };
  /** `http://127.0.0.1:PORT/` answering the caller's address. */
  httpTarget: string;
  /** `https://127.0.0.1:PORT/`, its certificate issued by `ca`. */
  httpsTarget: string;
  ca: string;
  api: SignedInApi;
  agents: Map<string, AgentProcess>;
  /** The gateway's configuration for a key (default this network's). */
  config(apiKey?: string): ProxyHelpersConfig;
  helpers(overrides?: Partial<ProxyHelpersConfig>): ProxyHelpers;
  /** Makes a key on the account, e.g. `{ monthly_byte_cap: 0 }`; answers `KEYID.SECRET`. */
  newKey(body?: Record<string, unknown>): Promise<string>;
  /** The server's `ipcola_proxy_refusals_total` for one code, over both protocols. */
  refusals(code: string): Promise<number>;
  stopAgent(ip: string): Promise<void>;
  close(): Promise<void>;
}

// Agents usually connect within seconds; three compiling at once on a loaded two-core
// machine can take twenty.
const NODES_UP_MS = 60_000;

export async function startProxyNetwork(
  exits: readonly ExitSpec[] = DEMO_EXITS,
): Promise<ProxyNetwork> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-sdk-proxy-'));
  const ca = await certificate(dataDir);
  const whoami: RequestListener = (req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`${req.socket.remoteAddress}`);
  };
  const http = await listen(createHttpServer(whoami));
  const https = await listen(createHttpsServer({ key: ca.key, cert: ca.cert }, whoami));
  const server = await startServer(
    serverEnv({ DATA_DIR: dataDir, LOG_LEVEL: 'debug' }),
    [],
    60_000,
  );
  const ports = server.ports as ProxyNetwork['ports'];
  const agents = new Map<string, AgentProcess>();
  const api = await signedInApi(ports.api, `sdk-proxy-${Date.now()}@example.com`);
  const newKey = async (body: Record<string, unknown> = {}) => {
    const answer = await api('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ scopes: ['proxy', 'api'], ...body }),
    });
    if (answer.status !== 201) throw new Error(`key: ${answer.status} ${await answer.text()}`);
    const key = (await answer.json()) as { id: string; secret: string };
    return `${key.id}.${key.secret}`;
  };
  const apiKey = await newKey();
  const [id, secret] = apiKey.split('.') as [string, string];
  const config = (key = apiKey): ProxyHelpersConfig => ({
    apiKey: key,
    proxyUrl: `http://127.0.0.1:${ports.proxy}`,
    socksUrl: `socks5h://127.0.0.1:${ports.socks}`,
    requestTls: { ca: ca.cert },
  });

  const network: ProxyNetwork = {
    server,
    ports,
    apiKey,
    key: { id, secret },
    httpTarget: `http://127.0.0.1:${port(http)}/`,
    httpsTarget: `https://127.0.0.1:${port(https)}/`,
    ca: ca.cert,
    api,
    agents,
    config,
    helpers: (overrides = {}) => createProxyHelpers({ ...config(), ...overrides }),
    newKey,
    async refusals(code) {
      const text = await (await fetch(`http://127.0.0.1:${ports.api}/metrics`)).text();
      let total = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith('ipcola_proxy_refusals_total{') && line.includes(`code="${code}"`)) {
          total += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
      }
      return total;
    },
    async stopAgent(ip) {
      await agents.get(ip)?.stop();
    },
    async close() {
      await Promise.all([...agents.values()].map((agent) => agent.stop()));
      await server.stop();
      await Promise.all([http, https].map((one) => new Promise((resolve) => one.close(resolve))));
      await rm(dataDir, { recursive: true, force: true });
    },
  };

  try {
    for (const exit of exits) {
      const answer = await api('/v1/nodes', { method: 'POST', body: '{}' });
      const { token } = (await answer.json()) as { token: string };
      const agent = spawnAgent(
        [
          '--hub',
          `127.0.0.1:${ports.hub}`,
          '--country',
          exit.country,
          '--exit-ip',
          exit.ip,
          // The targets are on this machine; real exits refuse loopback.
          '--allow-target',
          '127.0.0.1/32',
          '--log-level',
          'warn',
        ],
        { IPCOLA_NODE_TOKEN: token },
      );
      agents.set(exit.ip, agent);
    }
    await until(
      () => server.logs.filter((line) => line.msg === 'node up').length >= exits.length,
      NODES_UP_MS,
      'every exit node to connect',
    );
  } catch (error) {
    await network.close();
    throw error;
  }
  return network;
}

/** Polls `condition` every 50 ms until it holds, failing after `ms`. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// DNS:localhost too: https-proxy-agent checks an IP target's certificate against 'localhost'.
async function certificate(dir: string): Promise<{ key: string; cert: string }> {
  const keyFile = path.join(dir, 'target.key');
  const certFile = path.join(dir, 'target.crt');
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') };
}

async function listen<S extends Server>(server: S): Promise<S> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function port(server: Server): number {
  return (server.address() as { port: number }).port;
}
