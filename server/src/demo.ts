/**
 * `npm start -- --demo`: a local network to try IPCola without anything else: a demo
 * account and key, three exit nodes run by the real agent program (de on 127.0.0.12,
 * us on 127.0.0.13 and 127.0.0.14), and a local target that tells each request which
 * address it came from, so the printed curl lines work offline exactly as printed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Accounts } from './accounts/index.ts';
import { ConfigError } from './config/index.ts';
import { isIPColaError } from './errors/index.ts';
import type { Logger } from './log/index.ts';

const AGENT_MAIN = fileURLToPath(new URL('../../agent/src/main.ts', import.meta.url));
const AGENT_DIR = fileURLToPath(new URL('../../agent/', import.meta.url));

export const DEMO_EXITS = [
  { ip: '127.0.0.12', country: 'de' },
  { ip: '127.0.0.13', country: 'us' },
  { ip: '127.0.0.14', country: 'us' },
] as const;

export interface DemoOptions {
  accounts: Accounts;
  dataDir: string;
  publicHost: string;
  ports: { api: number; proxy: number; socks: number; hub: number };
  logger: Logger;
  /** Resolves once every one of these nodes is connected to the hub. */
  whenNodesUp(nodeIds: string[], timeoutMs: number): Promise<void>;
}

export interface Demo {
  /** The text printed for the newcomer. */
  readonly banner: string;
  readonly targetUrl: string;
  readonly key: { id: string; secret: string };
  stop(): Promise<void>;
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const { accounts, ports, publicHost } = options;
  const target = await startWhoami();
  const agents: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      agents.map(async (agent) => {
        if (agent.exitCode !== null || agent.signalCode !== null) return;
        const exited = once(agent, 'exit');
        agent.kill('SIGTERM');
        await exited;
      }),
    );
    await new Promise((resolve) => target.server.close(resolve));
  };

  try {
    const accountId = await demoAccount(accounts, options.dataDir);
    // Both scopes: the same key drives the proxy, and the SDK and CLI through the API.
    const key = await accounts.issueKey(accountId, { name: 'demo', scopes: ['proxy', 'api'] });
    const nodeIds: string[] = [];
    for (const exit of DEMO_EXITS) {
      const node = await accounts.registerNode(accountId, {
        name: `demo ${exit.country} ${exit.ip}`,
      });
      nodeIds.push(node.id);
      const agent = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          AGENT_MAIN,
          '--hub',
          `127.0.0.1:${ports.hub}`,
          '--country',
          exit.country,
          '--exit-ip',
          exit.ip,
          // The demo's only target is on this machine; real exits refuse loopback.
          '--allow-target',
          '127.0.0.1/32',
          '--log-level',
          'warn',
        ],
        {
          cwd: AGENT_DIR,
          env: { ...process.env, IPCOLA_NODE_TOKEN: node.token },
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      );
      agents.push(agent);
    }
    await options.whenNodesUp(nodeIds, 20_000);

    const proxy = (params: string) =>
      `http://${key.id}${params}:${key.secret}@${hostForUrl(publicHost)}:${ports.proxy}`;
    const banner = [
      '',
      'IPCola demo is ready: three exit nodes (de 127.0.0.12, us 127.0.0.13, us 127.0.0.14),',
      `a demo key, and a local target at ${target.url} that answers with the address it was reached from.`,
      '',
      `  curl -x ${proxy('-country-de')} ${target.url}`,
      `  curl -x ${proxy('-country-us-session-job42')} ${target.url}`,
      `  curl --socks5-hostname ${hostForUrl(publicHost)}:${ports.socks} -U ${key.id}-country-us:${key.secret} ${target.url}`,
      '',
      'The same key drives the API, the SDK (IPCOLA_KEY) and the ipcola command:',
      '',
      `  npx ipcola login --key ${key.id}.${key.secret} --api-url http://${hostForUrl(publicHost)}:${ports.api}`,
      `  npx ipcola curl --country de -- -s ${target.url}`,
      '',
      `The key secret is shown once. The demo account's email and password (for POST /v1/auth/login): ${path.join(options.dataDir, 'demo-account.json')}`,
      '',
    ].join('\n');
    return { banner, targetUrl: target.url, key: { id: key.id, secret: key.secret }, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The demo account, made once and kept (its login in DATA_DIR, readable only by its owner). */
/** A running server that the demo runs on. */
export interface DemoHost extends Pick<DemoOptions, 'accounts' | 'ports' | 'whenNodesUp'> {
  stop(): Promise<void>;
}

/**
 * Starts the demo on a running server and prints its banner; the server it answers stops
 * the demo first, then the server, whether or not the demo stopped cleanly.
 */
export async function startDemoOn<Running extends DemoHost>(
  running: Running,
  {
    tls,
    ...options
  }: Pick<DemoOptions, 'dataDir' | 'publicHost' | 'logger'> & {
    tls?: object | undefined;
  },
): Promise<Running> {
  if (tls) {
    // Its agents would need the CA, and its banner prints plain http:// URLs.
    throw new ConfigError(
      'TLS_CERT_FILE',
      'the demo runs in plain text: start --demo without TLS_CERT_FILE and TLS_KEY_FILE',
    );
  }
  const started = await startDemo({
    accounts: running.accounts,
    ports: running.ports,
    whenNodesUp: running.whenNodesUp,
    ...options,
  });
  const stopServer = running.stop;
  const withDemo = { ...running, stop: () => started.stop().then(stopServer, stopServer) };
  process.stdout.write(started.banner);
  return withDemo;
}

async function demoAccount(accounts: Accounts, dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'demo-account.json');
  try {
    const saved = JSON.parse(await readFile(file, 'utf8')) as { email: string; password: string };
    const user = await accounts.login(saved.email, saved.password);
    if (user) return user.accountId;
  } catch {
    // none saved yet (or unreadable): make one below
  }
  const email = `demo-${randomBytes(4).toString('hex')}@ipcola.invalid`;
  const password = randomBytes(18).toString('base64url');
  try {
    const { account } = await accounts.signup(email, password);
    await mkdir(dataDir, { recursive: true });
    await writeFile(file, `${JSON.stringify({ email, password }, null, 2)}\n`, { mode: 0o600 });
    return account.id;
  } catch (error) {
    if (isIPColaError(error)) throw new Error(`demo account: ${error.message}`);
    throw error;
  }
}

async function startWhoami(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end(`you reached this target from ${req.socket.remoteAddress}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/` };
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Whether the command line asks for the demo (`--demo`, the only argument there is). */
export function wantsDemo(args: readonly string[]): boolean {
  try {
    const { values } = parseArgs({
      args: [...args],
      options: { demo: { type: 'boolean', default: false } },
      strict: true,
    });
    return values.demo === true;
  } catch (error) {
    throw new ConfigError('arguments', (error as Error).message);
  }
}
