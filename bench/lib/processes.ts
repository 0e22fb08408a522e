/**
 * Starting, pinning, watching and stopping the processes under test: the target, our
 * server (gateway + hub) and agent, Squid and proxy-chain. Every process is started
 * through `taskset -c CORE`, which execs it, so the child's pid is the process's own.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openTcp } from './client.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BENCH_DIR = path.join(ROOT, 'bench');
const SERVER_DIR = path.join(ROOT, 'server');
const AGENT_DIR = path.join(ROOT, 'agent');

/** The core the load generator and the target run on, and the one every proxy runs on. */
export const LOAD_CORE = 0;
export const PROXY_CORE = cpus().length >= 2 ? 1 : 0;

export interface Managed {
  name: string;
  child: ChildProcess;
  pid: number;
  /** A Node process with the gc-on-signal preload. */
  gcOnSignal: boolean;
  stderr(): string;
  stop(): Promise<void>;
}

const running = new Set<Managed>();

/** The server's own V8 flags, as its `npm start` script passes them. */
export const SERVER_FLAGS = ['--initial-old-space-size=128'];

/** A full GC on SIGUSR2 (gc-on-signal.mjs), for every Node process under test. */
const GC_ON_SIGNAL = ['--expose-gc', '--import', path.join(BENCH_DIR, 'gc-on-signal.mjs')];

/** Node flags of the processes under test that run TypeScript (all but the server's bundle). */
export const NODE_FLAGS = ['--import', 'tsx', ...GC_ON_SIGNAL];

let bundled: Promise<void> | undefined;

/** What `npm start` runs: the server bundled by `npm run build` (once per bench run). */
function bundleServer(): Promise<void> {
  bundled ??= new Promise((resolve, reject) => {
    const build = spawn(process.execPath, ['scripts/bundle.mjs'], {
      cwd: SERVER_DIR,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    build.once('error', reject);
    build.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`server/scripts/bundle.mjs exited with ${code}`)),
    );
  });
  return bundled;
}

export interface NodeMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/**
 * Asks a Node process under test for a full collection (see gc-on-signal.mjs) and resolves
 * with its process.memoryUsage() afterwards; null for other processes or no answer in 3 s.
 */
export function collectGarbage(managed: Managed): Promise<NodeMemory | null> {
  const stream = managed.child.stderr;
  if (!managed.gcOnSignal || !stream) return Promise.resolve(null);
  return new Promise((resolve) => {
    let seen = '';
    const onData = (chunk: string) => {
      seen += chunk;
      const match = /IPCOLA_BENCH_MEMORY (\{[^\n]*\})\n/.exec(seen);
      if (!match) return;
      done(JSON.parse(match[1] as string) as NodeMemory);
    };
    const done = (value: NodeMemory | null) => {
      clearTimeout(timer);
      stream.off('data', onData);
      resolve(value);
    };
    const timer = setTimeout(() => done(null), 3_000);
    stream.on('data', onData);
    managed.child.kill('SIGUSR2');
  });
}

/** Spawns `command args` pinned to `core`; stdout lines go to onLine. */
export function spawnPinned(
  name: string,
  core: number,
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {},
): Managed {
  const child = spawn('taskset', ['-c', String(core), command, ...args], {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    let newline = partial.indexOf('\n');
    while (newline >= 0) {
      const line = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      options.onLine?.(line);
      newline = partial.indexOf('\n');
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const exited = once(child, 'exit');
  const managed: Managed = {
    name,
    child,
    pid: child.pid ?? -1,
    gcOnSignal: command === process.execPath && args.includes('--expose-gc'),
    stderr: () => stderr,
    async stop() {
      running.delete(managed);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(killer);
    },
  };
  running.add(managed);
  return managed;
}

/** Kills whatever is still running (on errors and signals); only processes started here. */
export function killAll(): void {
  for (const managed of running) {
    if (managed.child.exitCode === null && managed.child.signalCode === null) {
      managed.child.kill('SIGKILL');
    }
  }
  running.clear();
}

export function waitFor<T>(
  managed: Managed,
  what: string,
  timeoutMs: number,
  attach: (resolve: (value: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new Error(`${managed.name}: ${what} not seen after ${timeoutMs} ms\n${managed.stderr()}`),
      );
    }, timeoutMs);
    managed.child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(`${managed.name} exited (${code ?? signal}) before ${what}\n${managed.stderr()}`),
      );
    });
    attach((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** A Node child that prints `{"port":N}` once ready (target, proxy-chain, h2-floor). */
export async function startPortPrinter(
  name: string,
  core: number,
  script: string,
  args: string[] = [],
  scriptArgs: string[] = [],
) {
  let onPort: ((port: number) => void) | undefined;
  const managed = spawnPinned(
    name,
    core,
    process.execPath,
    [...args, ...NODE_FLAGS, path.join(BENCH_DIR, script), ...scriptArgs],
    {
      onLine: (line) => {
        try {
          const parsed = JSON.parse(line) as { port?: number };
          if (typeof parsed.port === 'number') onPort?.(parsed.port);
        } catch {}
      },
    },
  );
  const port = await waitFor<number>(managed, 'its port', 20_000, (resolve) => {
    onPort = resolve;
  });
  return { managed, port };
}

export function startTarget() {
  return startPortPrinter('target', LOAD_CORE, 'target.ts');
}

export function startProxyChain() {
  return startPortPrinter('proxy-chain', PROXY_CORE, 'proxy-chain-server.ts');
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(managed: Managed, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (managed.child.exitCode !== null || managed.child.signalCode !== null) {
      throw new Error(`${managed.name} exited before listening\n${managed.stderr()}`);
    }
    try {
      const socket = await openTcp({ host: '127.0.0.1', port }, 1_000);
      socket.destroy();
      return;
    } catch {
      if (Date.now() > deadline) {
        throw new Error(`${managed.name} not listening on ${port} after ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export function squidVersion(): string | null {
  try {
    const out = execFileSync('squid', ['-v'], { encoding: 'utf8' });
    return /Version (\S+)/.exec(out)?.[1] ?? out.split('\n')[0] ?? null;
  } catch {
    return null;
  }
}

/**
 * Squid with a minimal configuration: localhost clients only, CONNECT to any port, no
 * cache (memory or disk), no access log. Started as root, Squid drops to its
 * compiled-in user (`proxy` on Debian), so the temporary directory is world-writable.
 */
export async function startSquid(): Promise<{ managed: Managed; port: number; dir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-bench-squid-'));
  await chmod(dir, 0o777);
  const port = await freePort();
  const conf = path.join(dir, 'squid.conf');
  await writeFile(
    conf,
    [
      `http_port 127.0.0.1:${port}`,
      'acl bench_clients src 127.0.0.0/8',
      'http_access allow bench_clients',
      'http_access deny all',
      'cache deny all',
      'cache_mem 0 MB',
      'access_log none',
      `cache_log ${path.join(dir, 'cache.log')}`,
      `pid_filename ${path.join(dir, 'squid.pid')}`,
      `coredump_dir ${dir}`,
      'visible_hostname ipcola-bench',
      'pinger_enable off',
      'max_filedescriptors 20000',
      'shutdown_lifetime 0 seconds',
      '',
    ].join('\n'),
  );
  await chmod(conf, 0o644);
  const managed = spawnPinned('squid', PROXY_CORE, 'squid', ['-N', '-f', conf]);
  try {
    await waitForPort(managed, port, 20_000);
  } catch (error) {
    const log = await readFile(path.join(dir, 'cache.log'), 'utf8').catch(() => '');
    throw new Error(`${(error as Error).message}\n${log.slice(-3000)}`);
  }
  return { managed, port, dir };
}

export interface IpcolaStack {
  server: Managed;
  agent: Managed;
  ports: { api: number; proxy: number; socks: number; hub: number };
  key: { id: string; secret: string };
  dataDir: string;
  /** Log lines at warn level or above from the server and the agent, as they came. */
  problems: string[];
  stop(): Promise<void>;
}

const MAX_PROBLEMS = 50;

/** Keeps pino lines at warn (40) or above. */
function collectProblems(from: string, problems: string[], parsed: Record<string, unknown>): void {
  const level = typeof parsed.level === 'number' ? parsed.level : 0;
  if (level < 40 && !('raw' in parsed)) return;
  if (problems.length < MAX_PROBLEMS)
    problems.push(`${from}: ${JSON.stringify(parsed).slice(0, 600)}`);
}

/** Our server process, up and answering, on fresh ports and its own DATA_DIR. */
export interface ServerProcess {
  server: Managed;
  ports: IpcolaStack['ports'];
  dataDir: string;
  /** Log lines at warn level or above, as they came. */
  problems: string[];
  /** Resolves with the first log line that passes `test` (one already seen counts). */
  seen(
    test: (line: Record<string, unknown>) => boolean,
    what: string,
    ms: number,
  ): Promise<Record<string, unknown>>;
  /** Calls `listener` with every log line from now on. */
  onLog(listener: (line: Record<string, unknown>) => void): void;
  /** Stops the server and removes its DATA_DIR. */
  stop(): Promise<void>;
}

/**
 * The server as `npm start` runs it (its bundle, `node --initial-old-space-size=128
 * dist/main.js` in server/), pinned to the proxy core, on ports 0 and a temporary
 * DATA_DIR; `env` adds variables (DATABASE_URL, REDIS_URL...). With the gc-on-signal
 * preload, so that memory can be read on a collected heap.
 */
export async function startServer(
  options: {
    cpuProfileDir?: string;
    nodeFlags?: string[];
    env?: NodeJS.ProcessEnv;
    name?: string;
  } = {},
): Promise<ServerProcess> {
  await bundleServer();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-bench-data-'));
  const logs: Array<Record<string, unknown>> = [];
  const problems: string[] = [];
  const listeners = new Set<(line: Record<string, unknown>) => void>();
  const server = spawnPinned(
    options.name ?? 'ipcola-server',
    PROXY_CORE,
    process.execPath,
    [
      ...SERVER_FLAGS,
      ...(options.nodeFlags ?? []),
      ...(options.cpuProfileDir
        ? ['--cpu-prof', '--cpu-prof-dir', path.join(options.cpuProfileDir, 'gateway')]
        : []),
      ...GC_ON_SIGNAL,
      'dist/main.js',
    ],
    {
      cwd: SERVER_DIR,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        API_PORT: '0',
        PROXY_PORT: '0',
        SOCKS_PORT: '0',
        HUB_PORT: '0',
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        LOG_LEVEL: 'info',
        // The run moves a few GB; the trial credit must not be what stops it.
        // The most TRIAL_CREDIT takes: 250 TB at the default residential price.
        TRIAL_CREDIT: '1000000',
        ...options.env,
      },
      onLine: (line) => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = { raw: line };
        }
        if (logs.length < 1000) logs.push(parsed);
        collectProblems('server', problems, parsed);
        for (const listener of listeners) listener(parsed);
      },
    },
  );
  const seen: ServerProcess['seen'] = (test, what, ms) =>
    waitFor<Record<string, unknown>>(server, what, ms, (resolve) => {
      const found = logs.find(test);
      if (found) return resolve(found);
      const listener = (line: Record<string, unknown>) => {
        if (test(line)) {
          listeners.delete(listener);
          resolve(line);
        }
      };
      listeners.add(listener);
    });
  const stop = async () => {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const up = await seen((line) => typeof line.ports === 'object', 'the "up" log line', 60_000);
    const onLog = (listener: (line: Record<string, unknown>) => void) => {
      listeners.add(listener);
    };
    return {
      server,
      ports: up.ports as IpcolaStack['ports'],
      dataDir,
      problems,
      seen,
      onLog,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A signed-up account's session on the API: POSTs with its cookie and CSRF token. */
export async function signUp(apiPort: number) {
  const base = `http://127.0.0.1:${apiPort}`;
  const signup = await fetch(`${base}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      email: `bench-${Date.now()}@example.com`,
      password: 'a long enough password',
    }),
  });
  if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${await signup.text()}`);
  const cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const { csrf_token: csrf } = (await signup.json()) as { csrf_token: string };
  return async (pathname: string, body: unknown = {}) => {
    const response = await fetch(`${base}${pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    });
    if (response.status !== 201) {
      throw new Error(`POST ${pathname}: ${response.status} ${await response.text()}`);
    }
    return (await response.json()) as Record<string, string>;
  };
}

/**
 * Our stack as `npm start` and `npm run agent` run it: the server process (gateway, hub,
 * API) on fresh ports and a temporary DATA_DIR, an account and key made through the API,
 * a node registered through the API, and one agent (exit IP 127.0.0.12, country de).
 */
export async function startIpcola(
  options: {
    cpuProfileDir?: string;
    /** The agent's --max-streams (the bench default, 10,000, lets 5,000 idle tunnels through). */
    maxStreams?: number;
    /** Extra Node flags for the server and the agent (e.g. --trace-gc), for investigations. */
    nodeFlags?: string[];
  } = {},
): Promise<IpcolaStack> {
  const started = await startServer({
    ...(options.cpuProfileDir ? { cpuProfileDir: options.cpuProfileDir } : {}),
    ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}),
  });
  const { server, ports, dataDir, problems, seen } = started;
  // One directory per process: Node writes one profile per thread (tsx's loader runs in a
  // worker thread), so a fixed file name would be overwritten by the wrong thread.
  const profile = (name: string) =>
    options.cpuProfileDir
      ? ['--cpu-prof', '--cpu-prof-dir', path.join(options.cpuProfileDir, name)]
      : [];
  const api = await signUp(ports.api);
  const key = await api('/v1/keys');
  const node = await api('/v1/nodes');

  const agent = spawnPinned(
    'ipcola-agent',
    PROXY_CORE,
    process.execPath,
    [
      ...(options.nodeFlags ?? []),
      ...profile('agent'),
      ...NODE_FLAGS,
      'src/main.ts',
      '--hub',
      `127.0.0.1:${ports.hub}`,
      '--exit-ip',
      '127.0.0.12',
      '--country',
      'de',
      '--allow-target',
      '127.0.0.1/32',
      // The default (256) would refuse the idle-tunnel memory test's 5,000 streams.
      '--max-streams',
      String(options.maxStreams ?? 10_000),
      '--log-level',
      'warn',
    ],
    {
      cwd: AGENT_DIR,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, IPCOLA_NODE_TOKEN: node.token },
      onLine: (line) => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = { raw: line };
        }
        collectProblems('agent', problems, parsed);
      },
    },
  );
  await seen((line) => line.msg === 'node up', 'the agent connecting ("node up")', 30_000);

  return {
    server,
    agent,
    ports,
    key: { id: key.id as string, secret: key.secret as string },
    dataDir,
    problems,
    async stop() {
      await agent.stop();
      await started.stop();
    },
  };
}

/** Clock ticks per second for /proc/PID/stat. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcStats {
  rssBytes: number;
  cpuMs: number;
  /** The part of cpuMs spent in the kernel (system calls: on loopback, most of a write). */
  sysMs: number;
  /** Write system calls made so far (write, writev, send...: /proc/PID/io's syscw). */
  writeCalls: number;
}

/** RSS (VmRSS) and user+system CPU time of a process, from /proc. */
export async function procStats(pid: number): Promise<ProcStats> {
  const [status, stat, io] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8'),
    readFile(`/proc/${pid}/stat`, 'utf8'),
    readFile(`/proc/${pid}/io`, 'utf8').catch(() => ''),
  ]);
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const sysTicks = Number(fields[12]);
  const ticks = Number(fields[11]) + sysTicks;
  return {
    rssBytes: rssKb * 1024,
    cpuMs: (ticks * 1000) / CLK_TCK,
    sysMs: (sysTicks * 1000) / CLK_TCK,
    writeCalls: Number(/syscw:\s+(\d+)/.exec(io)?.[1] ?? Number.NaN),
  };
}

/** CPU ms of this process's children that have exited and been waited for (wrk). */
export async function reapedChildrenCpuMs(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime is field 16, cstime 17.
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLK_TCK;
}

/** The CPUs a process may run on, as the kernel reports them. */
export async function cpusAllowed(pid: number): Promise<string> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return /Cpus_allowed_list:\s+(\S+)/.exec(status)?.[1] ?? '?';
}

/** Busy and total jiffies per CPU, from /proc/stat. */
export async function cpuTimes(): Promise<Array<{ busy: number; total: number }>> {
  const stat = await readFile('/proc/stat', 'utf8');
  const out: Array<{ busy: number; total: number }> = [];
  for (const line of stat.split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const values = (match[2] as string).split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
    out[Number(match[1])] = { busy: total - idle, total };
  }
  return out;
}

export const CLOCK_TICKS_PER_SECOND = CLK_TCK;
