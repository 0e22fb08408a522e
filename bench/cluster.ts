/**
 * `npm run bench:cluster [-- --quick]`: what running IPCola as several instances costs
 * and gives, on this machine's PostgreSQL and Redis (DATABASE_URL and REDIS_URL, or the
 * local defaults; a scratch database is made and dropped).
 *
 * 1. Cross-instance hop: two instances, the exit node's agent attached to A. The same
 *    load through A (the exit is local) and through B (every stream hops to A) gives the
 *    hop's extra latency per new tunnel and per request inside a tunnel, its CPU per
 *    tunnel (both processes' CPU time over the churn), and its MB/s.
 * 2. Workers: one `npm start` with WORKERS=1, then WORKERS=2, the same agent attached
 *    (to every worker): new tunnels per second and MB/s through the shared ports, and
 *    the streams that hopped between the workers (ipcola_hop_streams_total: 0 expected).
 *
 * The load generator, target, agent and servers share this machine's cores: the figures
 * are ratios within one run, not capacity. Every loop is bounded.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createAccounts } from '../server/src/accounts/index.ts';
import { createExitDirectory } from '../server/src/cluster/exit-directory.ts';
import { createLogger } from '../server/src/log/index.ts';
import { startUsageFlusher, USAGE_GROUP, usageField } from '../server/src/metering/index.ts';
import { migrate, openPostgres, openRedisHotState } from '../server/src/store/index.ts';
import { serverEnv, startServer } from '../server/test/support/server-process.ts';
import type { Endpoint, Subject } from './lib/client.ts';
import { log } from './lib/context.ts';
import { download, serialLatency, tunnelChurn } from './lib/load.ts';
import { BENCH_DIR, procStats, ROOT, startTarget } from './lib/processes.ts';

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } },
});
const wanted = (part: 'hop' | 'workers' | 'registry' | 'flush') =>
  !args.only || args.only.split(',').includes(part);
const SIZE = args.quick
  ? { serial: 200, churn: 600, concurrency: 16, downloads: 3, rounds: 2 }
  : { serial: 1_000, churn: 3_000, concurrency: 32, downloads: 5, rounds: 3 };
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

type Server = Awaited<ReturnType<typeof startServer>> & {
  ports: Record<'api' | 'proxy' | 'socks' | 'hub', number>;
};

async function scratchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ipcola_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const again = new pg.Client({ connectionString: DATABASE_URL });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

async function startInstance(env: Record<string, string>): Promise<Server> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-bench-cluster-'));
  const server = (await startServer(
    serverEnv({
      DATA_DIR: dataDir,
      TRUST_DECLARED_LOCATION: 'true',
      TRIAL_CREDIT: '1000000',
      // The "up" line is at info; the bench's load logs nothing per connection.
      LOG_LEVEL: 'info',
      // How the cluster primary hands out connections ('rr' by default, or 'none'), to compare.
      NODE_CLUSTER_SCHED_POLICY: process.env.NODE_CLUSTER_SCHED_POLICY,
      ...env,
    }),
    [],
    120_000,
  )) as Server;
  let stopping = false;
  const stop = server.stop;
  server.stop = (signal) => {
    stopping = true;
    return stop(signal);
  };
  // A server that dies under load leaves the load generator waiting: say so at once.
  void server.exited.then((code) => {
    if (!stopping) {
      log(`a server exited on its own (${code}): ${server.stderr().slice(-2_000)}`);
      process.exit(1);
    }
  });
  return server;
}

/** An account with a proxy key, and a registered node token, through the API. */
async function customer(apiPort: number) {
  const base = `http://127.0.0.1:${apiPort}`;
  const signup = await fetch(`${base}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `bench-${Date.now()}@example.com`, password: 'a long password' }),
  });
  const cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const { csrf_token: csrf } = (await signup.json()) as { csrf_token: string };
  const post = async (pathname: string) =>
    (await (
      await fetch(`${base}${pathname}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
        body: '{}',
      })
    ).json()) as Record<string, string>;
  const key = await post('/v1/keys');
  const node = await post('/v1/nodes');
  return {
    key: { id: key.id as string, secret: key.secret as string },
    token: node.token as string,
  };
}

function startAgent(hubPort: number, token: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/main.ts',
      '--hub',
      `127.0.0.1:${hubPort}`,
      '--country',
      'de',
      '--exit-ip',
      '127.0.0.12',
      '--allow-target',
      '127.0.0.1/32',
      '--max-streams',
      '10000',
      '--log-level',
      'warn',
    ],
    {
      cwd: path.join(ROOT, 'agent'),
      env: { ...process.env, IPCOLA_NODE_TOKEN: token },
      stdio: 'ignore',
    },
  );
}

/** Polls until a CONNECT through `proxy` reaches the target (the exit is known there). */
async function whenReachable(subject: Subject, origin: Endpoint): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const probe = await tunnelChurn(subject, origin, {
      concurrency: 1,
      total: 1,
      warmup: 0,
      maxMs: 5_000,
    });
    if (probe.ops === 1) return;
    if (Date.now() > deadline) throw new Error(`${subject.name}: ${probe.firstError}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** CPU ms of a process and its descendants (a WORKERS primary and its workers). */
async function cpuOfTree(pid: number): Promise<number> {
  let total = (await procStats(pid)).cpuMs;
  let children: string[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    // no children
  }
  for (const child of children) total += await cpuOfTree(Number(child)).catch(() => 0);
  return total;
}

async function rssOfTree(pid: number): Promise<number> {
  let total = (await procStats(pid)).rssBytes;
  try {
    for (const child of execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)) {
      total += await rssOfTree(Number(child)).catch(() => 0);
    }
  } catch {
    // no children
  }
  return total;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

async function churnWithCpu(subject: Subject, origin: Endpoint, pids: number[]) {
  const before = await Promise.all(pids.map(cpuOfTree));
  const result = await tunnelChurn(subject, origin, {
    concurrency: SIZE.concurrency,
    total: SIZE.churn,
    warmup: 50,
    maxMs: 120_000,
  });
  const after = await Promise.all(pids.map(cpuOfTree));
  const cpuMs = after.reduce((sum, ms, i) => sum + ms - (before[i] ?? 0), 0);
  // The warm-up's tunnels are in the CPU time too.
  return { ...result, cpuUsPerTunnel: (cpuMs * 1000) / (result.ops + 50) };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const target = await startTarget();
  const origin: Endpoint = { host: '127.0.0.1', port: target.port };
  const results: Record<string, unknown> = {
    date: startedAt.toISOString(),
    mode: args.quick ? 'quick' : 'full',
    size: SIZE,
  };
  const cleanups: Array<() => Promise<unknown>> = [async () => target.managed.stop()];
  try {
    if (wanted('hop')) await measureHop(origin, results, cleanups);
    if (wanted('workers')) await measureWorkers(origin, results, cleanups);
    if (wanted('registry')) await measureRegistry(results);
    if (wanted('flush')) await measureFlush(results, cleanups);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  }
  const out = path.join(
    BENCH_DIR,
    'results',
    `cluster-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`,
  );
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(results, null, 2)}\nwritten to ${out}\n`);
}

type Cleanups = Array<() => Promise<unknown>>;

/**
 * What PostgreSQL takes to write usage: one flush of a batch with N distinct (key, node,
 * country, hour) rows across 100 keys, through the real flusher (rows, debits, journal),
 * from Redis counters into a scratch database.
 */
async function measureFlush(results: Record<string, unknown>, cleanups: Cleanups) {
  const quiet = createLogger('silent');
  const db = await scratchDatabase();
  cleanups.push(() => db.drop());
  const database = await openPostgres(db.url, quiet);
  const hot = await openRedisHotState(REDIS_URL, quiet, {
    prefix: `ipcola:bench-${randomBytes(4).toString('hex')}:`,
  });
  try {
    await migrate(database);
    const accounts = createAccounts(database, {
      pepper: randomBytes(32),
      trialCredit: { currency: 'usd', micro: 1_000_000_000_000 },
    });
    await database.query(
      `INSERT INTO prices (currency, exit_type, customer_micro_per_gb, operator_micro_per_gb,
                           effective_from) VALUES ('usd', 'residential', 4000000, 1000000, '1970-01-01Z')`,
    );
    const keys: string[] = [];
    for (let i = 0; i < 100; i++) {
      const { account } = await accounts.signup(
        `flush-${i}-${Date.now()}@example.com`,
        'a long password',
      );
      keys.push((await accounts.issueKey(account.id, { name: 'flush' })).id);
    }
    const flusher = startUsageFlusher({
      counters: hot.counters,
      allowances: hot.allowances,
      database,
      currency: 'usd',
      intervalMs: 3_600_000,
    });
    const figures: Record<string, number> = {};
    const hour = Math.floor(Date.now() / 3_600_000);
    for (const rows of args.quick ? [1_000, 10_000] : [1_000, 10_000, 50_000]) {
      const deltas: Record<string, number> = {};
      for (let i = 0; i < rows; i++) {
        const owner = { keyId: keys[i % keys.length] as string, nodeId: `n${i}`, country: 'de' };
        deltas[usageField(owner, hour, 'up')] = 1_000;
        deltas[usageField(owner, hour, 'down')] = 100_000;
        deltas[usageField(owner, hour, 'requests')] = 1;
      }
      await hot.counters.add(USAGE_GROUP, deltas);
      const started = performance.now();
      await flusher.flush();
      const ms = performance.now() - started;
      figures[`rows${rows}Ms`] = ms;
      figures[`rows${rows}UsPerRow`] = (ms * 1000) / rows;
      log(`flush: ${rows} rows in ${Math.round(ms)} ms`);
    }
    results.flush = figures;
    await flusher.close();
  } finally {
    await hot.close();
    await database.close();
  }
}

/**
 * What each node costs the cluster's registry in Redis, and what a full resync costs:
 * N nodes registered by one directory (as its hub would, with a placed exit each), read
 * back by another. Under a prefix of its own, deleted at the end.
 */
async function measureRegistry(results: Record<string, unknown>) {
  const count = args.quick ? 5_000 : 20_000;
  const quiet = createLogger('silent');
  const prefix = `ipcola:bench-${randomBytes(4).toString('hex')}:`;
  const holder = await openRedisHotState(REDIS_URL, quiet, { prefix });
  const reader = await openRedisHotState(REDIS_URL, quiet, { prefix });
  const redis = new Redis(REDIS_URL);
  const usedMemory = async () =>
    Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? Number.NaN);
  try {
    const before = await usedMemory();
    const sink = { addNodeExits() {}, removeNodeExits() {} };
    const common = { clusterName: 'bench', logger: quiet, disconnectLocal() {} };
    const held = createExitDirectory({
      ...common,
      registry: holder.registry,
      broadcast: holder.broadcast,
      instanceId: 'holder',
      peerAddress: '127.0.0.1:1',
      index: sink,
      isLocalAgent: () => true,
      exitStates: (nodeId) => [{ ip: '203.0.113.7', state: 'verified', node: nodeId }],
    });
    let heard = 0;
    const added = new Set<string>();
    const watcher = createExitDirectory({
      ...common,
      registry: reader.registry,
      broadcast: reader.broadcast,
      instanceId: 'reader',
      peerAddress: '127.0.0.1:2',
      index: {
        addNodeExits(nodeId) {
          heard++;
          added.add(nodeId);
        },
        removeNodeExits() {},
      },
      isLocalAgent: () => false,
      exitStates: () => [],
    });
    await held.resync();
    await watcher.resync();
    const exit = {
      ip: '203.0.113.7',
      type: 'residential',
      capacity: 64,
      country: 'de',
      region: 'bavaria',
      city: 'munich',
      asn: 3320,
      asOrganization: 'Deutsche Telekom AG',
    };
    const started = performance.now();
    for (let i = 0; i < count; i++) held.addNodeExits(`node${String(i).padStart(8, '0')}`, [exit]);
    // The registrations and broadcasts are sent without waiting; the reader hears them all.
    while (added.size < count && performance.now() - started < 120_000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const announceMs = performance.now() - started;
    const after = await usedMemory();
    const resyncStarted = performance.now();
    await watcher.resync();
    const resyncMs = performance.now() - resyncStarted;
    results.registry = {
      nodes: count,
      heardByBroadcast: added.size,
      redisBytesPerNode: (after - before) / count,
      announceAllMs: announceMs,
      resyncMs,
      resyncUsPerNode: (resyncMs * 1000) / count,
      note: `${heard} broadcasts applied`,
    };
    log(`registry: ${JSON.stringify(results.registry)}`);
    await held.close();
    await watcher.close();
  } finally {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    redis.disconnect();
    await holder.close();
    await reader.close();
  }
}

async function measureHop(origin: Endpoint, results: Record<string, unknown>, cleanups: Cleanups) {
  {
    const db = await scratchDatabase();
    cleanups.push(() => db.drop());
    const shared = { DATABASE_URL: db.url, REDIS_URL, WORKERS: '1' };
    log('hop: starting instances A and B');
    const a = await startInstance(shared);
    cleanups.push(() => a.stop());
    const b = await startInstance(shared);
    cleanups.push(() => b.stop());
    const { key, token } = await customer(a.ports.api);
    const agent = startAgent(a.ports.hub, token);
    cleanups.push(async () => {
      agent.kill('SIGKILL');
      await once(agent, 'exit').catch(() => {});
    });
    const auth = { username: `${key.id}-country-de`, password: key.secret };
    const viaA: Subject = {
      name: 'via-A (local exit)',
      kind: 'http',
      proxy: { host: '127.0.0.1', port: a.ports.proxy },
      auth,
    };
    const viaB: Subject = {
      name: 'via-B (hop to A)',
      kind: 'http',
      proxy: { host: '127.0.0.1', port: b.ports.proxy },
      auth,
    };
    await whenReachable(viaA, origin);
    await whenReachable(viaB, origin);
    const aPid = a.child.pid as number;
    const bPid = b.child.pid as number;

    const hop: Record<string, Record<string, number[]>> = { A: {}, B: {} };
    const push = (side: 'A' | 'B', name: string, value: number) => {
      const values = hop[side] as Record<string, number[]>;
      values[name] ??= [];
      values[name].push(value);
    };
    for (let round = 0; round < SIZE.rounds; round++) {
      for (const [side, subject] of [
        ['A', viaA],
        ['B', viaB],
      ] as const) {
        log(`hop round ${round + 1}: ${subject.name}`);
        const serial = await tunnelChurn(subject, origin, {
          concurrency: 1,
          total: SIZE.serial,
          warmup: 20,
          maxMs: 60_000,
        });
        push(side, 'newTunnelP50Ms', serial.p50Ms);
        const inside = await serialLatency(subject, origin, {
          mode: 'tunnel',
          warmup: 50,
          count: SIZE.serial,
          maxMs: 60_000,
        });
        push(side, 'requestInTunnelP50Ms', inside.p50Ms);
        const churn = await churnWithCpu(subject, origin, [aPid, bPid]);
        push(side, 'tunnelsPerSec', churn.perSec);
        push(side, 'cpuUsPerTunnel', churn.cpuUsPerTunnel);
        push(side, 'errors', churn.errors + serial.errors + inside.errors);
        const mbps = await download(subject, origin, {
          path: '/10m',
          bytes: 10 * 1024 * 1024,
          reps: SIZE.downloads,
          maxMs: 60_000,
        });
        push(side, 'MBps', mbps.medianMBps);
      }
    }
    const summary = (side: 'A' | 'B') =>
      Object.fromEntries(
        Object.entries(hop[side] as Record<string, number[]>).map(([k, v]) => [k, median(v)]),
      );
    const A = summary('A');
    const B = summary('B');
    results.hop = {
      viaA: A,
      viaB: B,
      extraNewTunnelP50Ms: (B.newTunnelP50Ms ?? 0) - (A.newTunnelP50Ms ?? 0),
      extraRequestInTunnelP50Ms: (B.requestInTunnelP50Ms ?? 0) - (A.requestInTunnelP50Ms ?? 0),
      extraCpuUsPerTunnel: (B.cpuUsPerTunnel ?? 0) - (A.cpuUsPerTunnel ?? 0),
      rssAtEndMB: {
        A: (await procStats(aPid)).rssBytes / 2 ** 20,
        B: (await procStats(bPid)).rssBytes / 2 ** 20,
      },
    };
    agent.kill('SIGKILL');
    await Promise.all([a.stop(), b.stop()]);
    log(`hop: ${JSON.stringify(results.hop)}`);
  }
}

async function measureWorkers(
  origin: Endpoint,
  results: Record<string, unknown>,
  cleanups: Cleanups,
) {
  {
    const workers: Record<string, Record<string, number>> = {};
    for (const count of [1, 2]) {
      const wdb = await scratchDatabase();
      cleanups.push(() => wdb.drop());
      log(`workers: starting WORKERS=${count}`);
      const server = await startInstance({
        DATABASE_URL: wdb.url,
        REDIS_URL,
        WORKERS: String(count),
      });
      cleanups.push(() => server.stop());
      const who = await customer(server.ports.api);
      const workerAgent = startAgent(server.ports.hub, who.token);
      const subject: Subject = {
        name: `workers-${count}`,
        kind: 'http',
        proxy: { host: '127.0.0.1', port: server.ports.proxy },
        auth: { username: `${who.key.id}-country-de`, password: who.key.secret },
      };
      // Every worker must know the exit: a few in a row all succeed.
      await whenReachable(subject, origin);
      for (let i = 0; i < 8; i++) await whenReachable(subject, origin);
      const pid = server.child.pid as number;
      const rates: number[] = [];
      const cpu: number[] = [];
      const mb: number[] = [];
      for (let round = 0; round < SIZE.rounds; round++) {
        log(`workers=${count} round ${round + 1}`);
        const churn = await churnWithCpu(subject, origin, [pid]);
        rates.push(churn.perSec);
        cpu.push(churn.cpuUsPerTunnel);
        const dl = await download(subject, origin, {
          path: '/10m',
          bytes: 10 * 1024 * 1024,
          reps: SIZE.downloads,
          maxMs: 60_000,
        });
        mb.push(dl.medianMBps);
      }
      workers[String(count)] = {
        tunnelsPerSec: median(rates),
        cpuUsPerTunnel: median(cpu),
        MBps: median(mb),
        rssMB: (await rssOfTree(pid)) / 2 ** 20,
        hopStreamsSeen: await hopStreamsSeen(server.ports.api),
      };
      workerAgent.kill('SIGKILL');
      await server.stop();
    }
    results.workers = {
      ...workers,
      tunnelsRatio2to1: (workers['2']?.tunnelsPerSec ?? 0) / (workers['1']?.tunnelsPerSec ?? 1),
      MBpsRatio2to1: (workers['2']?.MBps ?? 0) / (workers['1']?.MBps ?? 1),
    };
    log(`workers: ${JSON.stringify(results.workers)}`);
  }
}

/**
 * The most streams over the hop one worker counted (ipcola_hop_streams_total, both sides),
 * over a few scrapes on new connections, which the workers take in turn.
 */
async function hopStreamsSeen(apiPort: number): Promise<number> {
  let most = 0;
  for (let i = 0; i < 6; i++) {
    const text = await new Promise<string>((resolve, reject) => {
      get({ host: '127.0.0.1', port: apiPort, path: '/metrics', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve(body));
        res.on('error', reject);
      }).on('error', reject);
    });
    const counts = [...text.matchAll(/^ipcola_hop_streams_total\{side="(?:in|out)"\} (\d+)$/gm)];
    most = Math.max(
      most,
      counts.reduce((sum, match) => sum + Number(match[1]), 0),
    );
  }
  return most;
}

await main();
