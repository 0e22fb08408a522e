/**
 * `npm run bench`: IPCola (gateway + one agent) side by side with no proxy, Squid and
 * proxy-chain, in one run. See bench/README.md.
 *
 *   npm run bench                  full run (~3-4 minutes)
 *   npm run bench -- --quick       smoke run (1-2 minutes)
 *   npm run bench -- --profile     also write CPU profiles of the gateway and the agent
 *   npm run bench -- --only forward,churn   run only some measurements
 *
 * The harness re-executes itself under `taskset -c 0` with the open-files limit raised
 * as far as allowed; every proxy process is started under `taskset -c 1`.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildRequest,
  type Endpoint,
  HttpConn,
  openForwarding,
  openTunnel,
  type Subject,
} from './lib/client.ts';
import { type ProfileSummary, readProfile, summariseProfile } from './lib/cpuprofile.ts';
import {
  closeAll,
  download,
  holdTunnels,
  keepAliveRate,
  median,
  type RateResult,
  serialLatency,
  tunnelChurn,
} from './lib/load.ts';
import {
  BENCH_DIR,
  CLOCK_TICKS_PER_SECOND,
  collectGarbage,
  cpusAllowed,
  cpuTimes,
  killAll,
  LOAD_CORE,
  type Managed,
  type NodeMemory,
  PROXY_CORE,
  procStats,
  ROOT,
  reapedChildrenCpuMs,
  spawnPinned,
  squidVersion,
  startIpcola,
  startProxyChain,
  startSquid,
  startTarget,
} from './lib/processes.ts';
import {
  type Aggregate,
  evaluateTargets,
  formatReport,
  type MemoryResult,
  type Results,
  type SubjectName,
} from './lib/report.ts';
import { wrkRate, wrkVersion } from './lib/wrk.ts';

const TESTS = [
  'memory',
  'latency',
  'forward',
  'wrk',
  'tunnel',
  'churn',
  'download',
  'selection',
] as const;
type TestName = (typeof TESTS)[number];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});

interface Config {
  rounds: number;
  warmupMs: number;
  sliceMs: number;
  connections: number;
  churnTotal: number;
  churnConcurrency: number;
  downloadReps: number;
  latencyCount: number;
  idleTunnels: number;
  memoryPeers: boolean;
  /** Warm-up per path per subject before the timed measurements. */
  warmupPassMs: number;
  selectionBatches: number;
}

const FULL: Config = {
  rounds: 3,
  warmupMs: 500,
  sliceMs: 2_000,
  connections: 50,
  churnTotal: 1_000,
  churnConcurrency: 50,
  downloadReps: 20,
  latencyCount: 1_000,
  idleTunnels: 5_000,
  memoryPeers: true,
  warmupPassMs: 3_000,
  selectionBatches: 9,
};

const QUICK: Config = {
  rounds: 1,
  warmupMs: 300,
  sliceMs: 1_000,
  connections: 50,
  churnTotal: 300,
  churnConcurrency: 50,
  downloadReps: 3,
  latencyCount: 200,
  idleTunnels: 2_000,
  memoryPeers: false,
  warmupPassMs: 1_500,
  selectionBatches: 5,
};

const TEN_MB = 10 * 1024 * 1024;
/**
 * Untimed downloads first: a Node process's heap limits settle only after some 100 MB
 * have passed through it, and until then its figures swing by a factor of two.
 */
const DOWNLOAD_WARMUP = 10;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function fdLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? Number.NaN);
}

async function packageVersion(name: string): Promise<string | null> {
  try {
    const text = await readFile(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8');
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return null;
  }
}

/** CPU each process used, and how busy each core was, while `work` ran. */
interface CpuAccount {
  wallMs: number;
  /** CPU ms per process name (our server, agent, squid, proxy-chain, target, harness). */
  processMs: Record<string, number>;
  /** Share of the proxy core used by anything but the subject's own processes. */
  proxyCoreForeignPct: number;
  /** Share of the load core used by anything but the harness and the target. */
  loadCoreForeignPct: number;
}

async function accounted<T>(
  subjectProcs: Managed[],
  target: Managed,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: CpuAccount }> {
  const procs = [...subjectProcs, target];
  const before = await Promise.all(procs.map((p) => procStats(p.pid)));
  const coresBefore = await cpuTimes();
  const selfBefore = process.cpuUsage();
  const childrenBefore = await reapedChildrenCpuMs();
  const t0 = performance.now();
  const result = await work();
  const wallMs = performance.now() - t0;
  const self = process.cpuUsage(selfBefore);
  const childrenMs = (await reapedChildrenCpuMs()) - childrenBefore;
  const coresAfter = await cpuTimes();
  const after = await Promise.all(procs.map((p) => procStats(p.pid)));
  const processMs: Record<string, number> = {};
  procs.forEach((p, i) => {
    processMs[p.name] =
      (after[i] as { cpuMs: number }).cpuMs - (before[i] as { cpuMs: number }).cpuMs;
  });
  // The harness, and wrk when it is the load generator.
  processMs.harness = (self.user + self.system) / 1000 + childrenMs;
  const busyMs = (core: number) => {
    const a = coresAfter[core];
    const b = coresBefore[core];
    return a && b ? ((a.busy - b.busy) * 1000) / CLOCK_TICKS_PER_SECOND : 0;
  };
  const subjectMs = subjectProcs.reduce((sum, p) => sum + (processMs[p.name] ?? 0), 0);
  const loadOwnMs = (processMs.harness ?? 0) + (processMs[target.name] ?? 0);
  // /proc counts in clock ticks (10 ms): too coarse to judge runs shorter than half a second.
  const pct = (ms: number) => (wallMs < 500 ? 0 : Math.max(0, Math.min(100, (100 * ms) / wallMs)));
  return {
    result,
    cpu: {
      wallMs,
      processMs,
      proxyCoreForeignPct: PROXY_CORE === LOAD_CORE ? 0 : pct(busyMs(PROXY_CORE) - subjectMs),
      loadCoreForeignPct: pct(busyMs(LOAD_CORE) - loadOwnMs),
    },
  };
}

function aggregate(
  runs: Array<{ result: RateResult; cpu: CpuAccount }>,
  procs: Managed[],
): Aggregate {
  const ops = runs.reduce((s, r) => s + r.result.ops, 0);
  const cpuUsPerOp: Record<string, number> = {};
  for (const p of procs) {
    const ms = runs.reduce((s, r) => s + (r.cpu.processMs[p.name] ?? 0), 0);
    cpuUsPerOp[p.name] = ops > 0 ? (ms * 1000) / ops : Number.NaN;
  }
  const firstError = runs.find((r) => r.result.firstError)?.result.firstError;
  return {
    ops,
    errors: runs.reduce((s, r) => s + r.result.errors, 0),
    elapsedMs: runs.reduce((s, r) => s + r.result.elapsedMs, 0),
    perSec: median(runs.map((r) => r.result.perSec)),
    p50Ms: median(runs.map((r) => r.result.p50Ms)),
    p99Ms: median(runs.map((r) => r.result.p99Ms)),
    rounds: runs.map((r) => r.result.perSec),
    cpuUsPerOp,
    maxProxyCoreForeignPct: Math.max(...runs.map((r) => r.cpu.proxyCoreForeignPct)),
    maxLoadCoreForeignPct: Math.max(...runs.map((r) => r.cpu.loadCoreForeignPct)),
    ...(firstError ? { firstError } : {}),
  };
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const config = args.quick ? QUICK : FULL;
  const only = new Set<TestName>(
    args.only ? (args.only.split(',').map((s) => s.trim()) as TestName[]) : TESTS,
  );
  for (const name of only) {
    if (!TESTS.includes(name))
      throw new Error(`--only: unknown measurement "${name}" (${TESTS.join(', ')})`);
  }
  const wrk = wrkVersion();
  const squid = squidVersion();
  if (!squid) throw new Error('squid is not installed (apt-get install squid)');

  const results: Results = {
    meta: {
      date: new Date().toISOString(),
      mode: args.quick ? 'quick' : 'full',
      nproc: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?',
      kernel: release(),
      node: process.version,
      squid,
      proxyChain: await packageVersion('proxy-chain'),
      wrk,
      fdLimit: await fdLimit(),
      loadAvgStart: loadavg(),
      loadAvgEnd: [],
      loadCore: LOAD_CORE,
      proxyCore: PROXY_CORE,
      pinning: {},
      config: { ...config },
      durationS: 0,
      sanity: {},
      warnings: [],
      logProblems: [],
    },
    forward: {},
    forwardWrk: {},
    tunnel: {},
    churn: {},
    download: {},
    latencyForward: {},
    latencyTunnel: {},
    memory: null,
    memoryPeers: {},
    selection: null,
    phases: [],
    profiles: {},
  };
  const warn = (message: string) => {
    results.meta.warnings.push(message);
    log(`WARNING: ${message}`);
  };
  if (PROXY_CORE === LOAD_CORE)
    warn('fewer than 2 CPUs: proxies share the load core; ratios are not meaningful');
  if (results.meta.fdLimit < config.idleTunnels + 2_000) {
    warn(`open-files limit ${results.meta.fdLimit} is low for ${config.idleTunnels} idle tunnels`);
    config.idleTunnels = Math.max(100, results.meta.fdLimit - 2_000);
  }

  const profileDir = args.profile
    ? path.join(BENCH_DIR, 'results', 'profiles', new Date().toISOString().replace(/[:.]/g, '-'))
    : undefined;
  if (profileDir) await mkdir(profileDir, { recursive: true });

  log(
    `${results.meta.mode} run; starting target, IPCola (server + agent), Squid ${squid}, proxy-chain`,
  );
  const target = await startTarget();
  const [ours, sq, pc] = await Promise.all([
    startIpcola(profileDir ? { cpuProfileDir: profileDir } : {}),
    startSquid(),
    startProxyChain(),
  ]);
  const origin: Endpoint = { host: '127.0.0.1', port: target.port };
  const local = (port: number): Endpoint => ({ host: '127.0.0.1', port });
  const auth = { username: ours.key.id, password: ours.key.secret };
  const subjects: Record<SubjectName, Subject> = {
    direct: { name: 'direct', kind: 'direct' },
    ipcola: { name: 'ipcola', kind: 'http', proxy: local(ours.ports.proxy), auth },
    'ipcola-socks': { name: 'ipcola-socks', kind: 'socks', proxy: local(ours.ports.socks), auth },
    squid: { name: 'squid', kind: 'http', proxy: local(sq.port) },
    'proxy-chain': { name: 'proxy-chain', kind: 'http', proxy: local(pc.port) },
  };
  const procsOf: Record<SubjectName, Managed[]> = {
    direct: [],
    ipcola: [ours.server, ours.agent],
    'ipcola-socks': [ours.server, ours.agent],
    squid: [sq.managed],
    'proxy-chain': [pc.managed],
  };

  try {
    results.meta.pinning = {
      harness: await cpusAllowed(process.pid),
      target: await cpusAllowed(target.managed.pid),
      'ipcola-server': await cpusAllowed(ours.server.pid),
      'ipcola-agent': await cpusAllowed(ours.agent.pid),
      squid: await cpusAllowed(sq.managed.pid),
      'proxy-chain': await cpusAllowed(pc.managed.pid),
    };

    // Each subject must answer, and ours from the agent's exit IP.
    for (const [name, subject] of Object.entries(subjects) as Array<[SubjectName, Subject]>) {
      const open = subject.kind === 'http' ? openForwarding : openTunnel;
      const conn = new HttpConn(await open(subject, origin));
      const answer = await conn.request(
        buildRequest(subject, origin, '/whoami', { forward: true }),
        true,
      );
      conn.close();
      const seenFrom = answer.body?.toString() ?? '';
      results.meta.sanity[name] = `${answer.status} from ${seenFrom}`;
      if (answer.status !== 200)
        throw new Error(`${name}: sanity request answered ${answer.status}`);
      if (name.startsWith('ipcola') && seenFrom !== '127.0.0.12') {
        throw new Error(`${name}: the target saw ${seenFrom}, not the agent's exit IP 127.0.0.12`);
      }
    }
    log(`all subjects answer; pinning ${JSON.stringify(results.meta.pinning)}`);

    const rateRounds = async (
      names: SubjectName[],
      run: (subject: Subject) => Promise<RateResult>,
      rounds = config.rounds,
    ): Promise<Partial<Record<SubjectName, Aggregate>>> => {
      const runs = new Map<SubjectName, Array<{ result: RateResult; cpu: CpuAccount }>>();
      for (let r = 0; r < rounds; r++) {
        // Rotate the order so that no subject always runs first or last.
        const order = names.map((_, i) => names[(i + r) % names.length] as SubjectName);
        for (const name of order) {
          const measured = await accounted(procsOf[name], target.managed, () =>
            run(subjects[name]),
          );
          runs.set(name, [...(runs.get(name) ?? []), measured]);
        }
      }
      const out: Partial<Record<SubjectName, Aggregate>> = {};
      for (const [name, list] of runs) {
        const agg = aggregate(list, procsOf[name]);
        out[name] = agg;
        if (agg.errors > 0) warn(`${name}: ${agg.errors} errors (${agg.firstError})`);
        if (agg.maxProxyCoreForeignPct > 10) {
          warn(
            `${name}: up to ${agg.maxProxyCoreForeignPct.toFixed(0)}% of the proxy core was used by other processes`,
          );
        }
        if (agg.maxLoadCoreForeignPct > 15) {
          warn(
            `${name}: up to ${agg.maxLoadCoreForeignPct.toFixed(0)}% of the load core was used by other processes`,
          );
        }
      }
      return out;
    };
    /** Records when a measurement ran, to cut its part out of the CPU profiles. */
    const startPhase = (name: string) => {
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      return () =>
        results.phases.push({ name, fromUs, toUs: Number(process.hrtime.bigint() / 1000n) });
    };
    const peers: SubjectName[] = ['direct', 'ipcola', 'squid', 'proxy-chain'];
    const withSocks: SubjectName[] = ['direct', 'ipcola', 'ipcola-socks', 'squid', 'proxy-chain'];

    // 6. Memory per idle tunnel, first, on a gateway that has carried little so far.
    if (only.has('memory')) {
      const phaseDone = startPhase('memory');
      /** Collected-heap readings: a full GC in every Node process, then RSS from /proc. */
      const steady = async (procs: Managed[]) => {
        let node: Array<NodeMemory | null> = [];
        for (let i = 0; i < 2; i++) {
          node = await Promise.all(procs.map((p) => collectGarbage(p)));
          await sleep(300);
        }
        const stats = await Promise.all(procs.map((p) => procStats(p.pid)));
        return procs.map((_, i) => ({
          rss: (stats[i] as { rssBytes: number }).rssBytes,
          heap: node[i]
            ? (node[i] as NodeMemory).heapUsed + (node[i] as NodeMemory).external
            : null,
        }));
      };
      const memoryOf = async (name: SubjectName): Promise<MemoryResult> => {
        const subject = subjects[name];
        const procs = procsOf[name];
        // Warm the path (lazy code, pools) so that the baseline is not a cold process.
        const warm = await holdTunnels(subject, origin, {
          count: 200,
          concurrency: 50,
          maxMs: 20_000,
        });
        await closeAll(warm.sockets);
        await sleep(500);
        const before = await steady(procs);
        const held = await holdTunnels(subject, origin, {
          count: config.idleTunnels,
          concurrency: 100,
          maxMs: 60_000,
        });
        await sleep(1_000);
        const after = await steady(procs);
        const tunnels = held.sockets.length;
        await closeAll(held.sockets);
        if (held.errors > 0)
          warn(`${name}: ${held.errors} idle tunnels failed to open (${held.firstError})`);
        const perProcess: MemoryResult['perProcess'] = {};
        procs.forEach((p, i) => {
          const b = before[i] as { rss: number; heap: number | null };
          const a = after[i] as { rss: number; heap: number | null };
          perProcess[p.name] = {
            beforeBytes: b.rss,
            afterBytes: a.rss,
            bytesPerTunnel: tunnels > 0 ? (a.rss - b.rss) / tunnels : Number.NaN,
            ...(a.heap !== null && b.heap !== null
              ? {
                  heapBeforeBytes: b.heap,
                  heapBytesPerTunnel: tunnels > 0 ? (a.heap - b.heap) / tunnels : Number.NaN,
                }
              : {}),
          };
        });
        log(
          `memory ${name}: ${tunnels} idle tunnels (opened in ${(held.elapsedMs / 1000).toFixed(1)} s): ` +
            Object.entries(perProcess)
              .map(
                ([n, v]) =>
                  `${n} ${(v.bytesPerTunnel / 1024).toFixed(1)} KB/tunnel (RSS ${(v.beforeBytes / 2 ** 20).toFixed(0)} MB at rest)`,
              )
              .join(', '),
        );
        await sleep(500);
        return { tunnels, openSeconds: held.elapsedMs / 1000, perProcess };
      };
      results.memory = await memoryOf('ipcola');
      if (config.memoryPeers) {
        results.memoryPeers.squid = await memoryOf('squid');
        results.memoryPeers['proxy-chain'] = await memoryOf('proxy-chain');
      }
      phaseDone();
    }

    // Warm-up: V8 compiles the proxies' hot paths only after thousands of requests (our
    // gateway forwards ~3x slower in its first second than after ~3 s of load). Every Node
    // subject gets the same warm-up on every path; Squid and direct get it too.
    const timed: TestName[] = ['latency', 'forward', 'wrk', 'tunnel', 'churn', 'download'];
    if (timed.some((name) => only.has(name))) {
      const phaseDone = startPhase('warm-up');
      log(`warm-up: ${config.warmupPassMs} ms per path per subject`);
      for (const name of withSocks) {
        const subject = subjects[name];
        const base = { connections: config.connections, warmupMs: 0, maxOps: 2_000_000 };
        if (name !== 'ipcola-socks') {
          await keepAliveRate(subject, origin, {
            ...base,
            durationMs: config.warmupPassMs,
            mode: 'forward',
          });
        }
        await keepAliveRate(subject, origin, {
          ...base,
          durationMs: config.warmupPassMs / 2,
          mode: 'tunnel',
        });
        await tunnelChurn(subject, origin, {
          concurrency: 50,
          total: 200,
          warmup: 0,
          maxMs: 10_000,
        });
      }
      phaseDone();
    }

    // 5. Latency of one request at a time.
    if (only.has('latency')) {
      const phaseDone = startPhase('latency');
      log(`latency: ${config.latencyCount} sequential 1 KB requests per subject`);
      const latency = (mode: 'forward' | 'tunnel') => (subject: Subject) =>
        serialLatency(subject, origin, {
          mode,
          warmup: 50,
          count: config.latencyCount,
          maxMs: 30_000,
        });
      results.latencyForward = await rateRounds(peers, latency('forward'), 1);
      results.latencyTunnel = await rateRounds(withSocks, latency('tunnel'), 1);
      phaseDone();
    }

    // 1. Plain-HTTP forwarding over 50 keep-alive connections.
    const keepAlive = (mode: 'forward' | 'tunnel') => (subject: Subject) =>
      keepAliveRate(subject, origin, {
        connections: config.connections,
        warmupMs: config.warmupMs,
        durationMs: config.sliceMs,
        maxOps: 2_000_000,
        mode,
      });
    if (only.has('forward')) {
      const phaseDone = startPhase('forward');
      log(
        `forwarding: 1 KB over ${config.connections} keep-alive connections, ${config.rounds} x ${config.sliceMs} ms`,
      );
      results.forward = await rateRounds(peers, keepAlive('forward'));
      phaseDone();
    }
    if (only.has('wrk')) {
      const phaseDone = startPhase('wrk');
      if (wrk) {
        log(`forwarding with wrk ${wrk}: ${config.connections} connections`);
        results.forwardWrk = await rateRounds(
          peers,
          (subject) =>
            wrkRate(subject, origin, {
              connections: config.connections,
              durationMs: config.sliceMs,
            }),
          1,
        );
      } else {
        warn('wrk is not installed: the wrk cross-check is skipped (apt-get install wrk)');
      }
      phaseDone();
    }

    // 2. 1 KB requests inside 50 open tunnels.
    if (only.has('tunnel')) {
      const phaseDone = startPhase('tunnel');
      log(`tunnels: 1 KB inside ${config.connections} open CONNECT/SOCKS tunnels`);
      results.tunnel = await rateRounds(withSocks, keepAlive('tunnel'));
      phaseDone();
    }

    // 3. New tunnels per second.
    if (only.has('churn')) {
      const phaseDone = startPhase('churn');
      log(`new tunnels: ${config.churnTotal} per round, concurrency ${config.churnConcurrency}`);
      results.churn = await rateRounds(withSocks, (subject) =>
        tunnelChurn(subject, origin, {
          concurrency: config.churnConcurrency,
          total: config.churnTotal,
          warmup: 50,
          maxMs: 20_000,
        }),
      );
      phaseDone();
    }

    // 4. 10 MB downloads through CONNECT (and SOCKS5).
    if (only.has('download')) {
      const phaseDone = startPhase('download');
      log(
        `downloads: 10 MB x ${config.downloadReps} per subject (after ${DOWNLOAD_WARMUP} for warm-up)`,
      );
      for (const name of withSocks) {
        // The large-transfer path has its own warm-up (its code is not hot from the rest).
        await download(subjects[name], origin, {
          path: '/10m',
          bytes: TEN_MB,
          reps: DOWNLOAD_WARMUP,
          maxMs: 20_000,
        });
        const { result, cpu } = await accounted(procsOf[name], target.managed, () =>
          download(subjects[name], origin, {
            path: '/10m',
            bytes: TEN_MB,
            reps: config.downloadReps,
            maxMs: 60_000,
          }),
        );
        const cpuMsPerMB: Record<string, number> = {};
        const mb = (result.runs.length * TEN_MB) / 1e6;
        for (const p of procsOf[name]) cpuMsPerMB[p.name] = (cpu.processMs[p.name] ?? 0) / mb;
        results.download[name] = { ...result, cpuMsPerMB };
        if (result.errors > 0)
          warn(`${name}: ${result.errors} downloads failed (${result.firstError})`);
      }
      phaseDone();
    }
  } finally {
    log('stopping the proxies');
    await Promise.all([ours.stop(), sq.managed.stop(), pc.managed.stop(), target.managed.stop()]);
    results.meta.logProblems = ours.problems;
  }

  if (profileDir) {
    // Per process, the main thread's profile is the busiest one; it is summarised per
    // measurement, leaving start-up (database, transpiling) out.
    for (const name of ['gateway', 'agent']) {
      const dir = path.join(profileDir, name);
      const files = (await readdir(dir).catch(() => [] as string[])).filter((f) =>
        f.endsWith('.cpuprofile'),
      );
      let best: {
        file: string;
        profile: Awaited<ReturnType<typeof readProfile>>;
        busy: number;
      } | null = null;
      for (const file of files) {
        const profile = await readProfile(path.join(dir, file));
        const busy = summariseProfile(profile).totalMs;
        if (!best || busy > best.busy) best = { file: path.join(dir, file), profile, busy };
      }
      if (!best) {
        warn(`no CPU profile was written for the ${name}`);
        continue;
      }
      const phases: Record<string, ProfileSummary> = {};
      for (const phase of results.phases) {
        phases[phase.name] = summariseProfile(best.profile, phase);
      }
      results.profiles[name] = { file: best.file, phases };
    }
  }

  // 7. Exit selection with 1,000,000 exits, alone on the proxy core.
  if (only.has('selection')) {
    log('exit selection: building 1,000,000 exits');
    let line = '';
    const child = spawnPinned(
      'exit-selection',
      PROXY_CORE,
      process.execPath,
      [
        '--max-old-space-size=4096',
        '--import',
        'tsx',
        path.join(BENCH_DIR, 'exit-selection.ts'),
        '--batches',
        String(config.selectionBatches),
      ],
      {
        onLine: (l) => {
          line = l;
        },
      },
    );
    const code = await new Promise<number | null>((resolve) => child.child.once('exit', resolve));
    if (code !== 0) warn(`exit selection failed (${code}): ${child.stderr().slice(-500)}`);
    else results.selection = JSON.parse(line);
  }

  results.meta.loadAvgEnd = loadavg();
  results.meta.durationS = (Date.now() - startedAt) / 1000;
  const outFile = args.out ?? path.join(BENCH_DIR, 'results', 'latest.json');
  await mkdir(path.dirname(outFile), { recursive: true });
  results.targets = evaluateTargets(results);
  await writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(formatReport(results));
  process.stdout.write(`\nJSON: ${path.relative(process.cwd(), outFile) || outFile}\n`);
}

// ---------------------------------------------------------------------------------------
// Entry: re-execute pinned to the load core, with as many open files as allowed.
if (process.env.IPCOLA_BENCH_CHILD !== '1') {
  const child = spawn(
    'sh',
    [
      '-c',
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec taskset -c "$0" "$@"',
      String(LOAD_CORE),
      process.execPath,
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, IPCOLA_BENCH_CHILD: '1' } },
  );
  // Ctrl-C reaches the child too (same process group); it cleans up and exits.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  process.on('SIGINT', () => {
    killAll();
    process.exit(130);
  });
  process.on('SIGTERM', () => {
    killAll();
    process.exit(143);
  });
  main().catch((error) => {
    console.error(error);
    killAll();
    process.exit(1);
  });
}
