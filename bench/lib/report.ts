/** The shape of bench/results/latest.json and the table printed from it. */
import type { ProfileSummary } from './cpuprofile.ts';
import type { DownloadResult, RateResult } from './load.ts';

export type SubjectName = 'direct' | 'ipcola' | 'ipcola-socks' | 'squid' | 'proxy-chain';
type PerSubject<T> = Partial<Record<SubjectName, T>>;

export interface Aggregate extends RateResult {
  /** perSec of each round (the reported perSec, p50 and p99 are medians over rounds). */
  rounds: number[];
  /** CPU µs per successful operation, per process of the subject. */
  cpuUsPerOp: Record<string, number>;
  maxProxyCoreForeignPct: number;
  maxLoadCoreForeignPct: number;
}

export interface MemoryResult {
  tunnels: number;
  openSeconds: number;
  /** RSS before/after (collected heaps), and JS heap + external where the process is Node. */
  perProcess: Record<
    string,
    {
      beforeBytes: number;
      afterBytes: number;
      bytesPerTunnel: number;
      heapBeforeBytes?: number;
      heapBytesPerTunnel?: number;
    }
  >;
}

export interface SelectionResult {
  exits: number;
  countries: number;
  citiesPerCountry: number;
  buildMs: number;
  heapBytesPerExit: number;
  results: Array<{ name: string; nsPerOp: number; opsPerBatch: number; batches: number[] }>;
}

/** The server's memory once started and collected (measurements/rest.ts). */
export interface RestResult {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
}

/** One hub holding many simulated node tunnels (measurements/hub.ts). */
export interface HubResult {
  /** Tunnels asked for, and those up at the hub when memory was read. */
  wanted: number;
  tunnels: number;
  openSeconds: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  bytesPerTunnel: number;
  heapBytesPerTunnel: number;
  /** Server CPU while every tunnel is idle (heart-beats only), over idleSeconds. */
  idleSeconds: number;
  idleCpuMsPerSecond: number;
  /** The hub's PING interval, so that the heart-beat cost can be read per PING. */
  pingIntervalMs: number;
  cpuUsPerPing: number;
  /** The simulating process (all the agents' sessions). */
  swarmRssBytes: number;
}

/** A steady mixed load for minutes (measurements/soak.ts). */
export interface SoakResult {
  seconds: number;
  warmUpSeconds: number;
  operations: Record<string, number>;
  errors: number;
  firstError: string | null;
  samples: Array<{ s: number; rssBytes: number; heapUsedBytes: number; externalBytes: number }>;
  /** Least-squares slopes after the warm-up, per hour. */
  rssMBPerHour: number;
  heapMBPerHour: number;
  externalMBPerHour: number;
  agentHeapMBPerHour: number;
  /** The gateway's ipcola_tunnels_open and open files once the load stopped. */
  tunnelsOpenAfter: number;
  fdsBefore: number;
  fdsAfter: number;
  /** Gateway CPU per operation over the whole soak. */
  cpuUsPerOperation: number;
  suspects: string[];
}

/** New CONNECT tunnels, CPU per tunnel on the proxy core (measurements/floor.ts). */
export interface FloorResult {
  /** The gateway (front) and the agent (back). */
  ipcola: FloorRow;
  /** h2-floor.ts: its relay (front) and exit (back). */
  floor: FloorRow;
  /** mux-floor.ts: the same over a minimal JavaScript multiplexer. */
  mux: FloorRow;
  /** One process: front only. */
  proxyChain: FloorRow;
}

export interface FloorRow {
  perSec: number;
  frontUs: number;
  /** Of frontUs, the kernel's part (socket calls), from /proc's stime. */
  frontSysUs: number;
  /** Write system calls of the front process per tunnel (each a pass through loopback TCP). */
  frontWrites: number;
  backUs: number;
}

export interface TargetCheck {
  target: string;
  met: boolean | null;
  detail: string;
}

export interface Results {
  meta: {
    date: string;
    mode: 'full' | 'quick';
    nproc: number;
    cpuModel: string;
    kernel: string;
    node: string;
    squid: string | null;
    proxyChain: string | null;
    wrk: string | null;
    fdLimit: number;
    loadAvgStart: number[];
    loadAvgEnd: number[];
    loadCore: number;
    proxyCore: number;
    pinning: Record<string, string>;
    config: Record<string, unknown>;
    durationS: number;
    sanity: Record<string, string>;
    warnings: string[];
    /** Our server's and agent's log lines at warn level or above during the run. */
    logProblems: string[];
  };
  forward: PerSubject<Aggregate>;
  forwardWrk: PerSubject<Aggregate>;
  tunnel: PerSubject<Aggregate>;
  churn: PerSubject<Aggregate>;
  download: PerSubject<DownloadResult & { cpuMsPerMB: Record<string, number> }>;
  latencyForward: PerSubject<Aggregate>;
  latencyTunnel: PerSubject<Aggregate>;
  memory: MemoryResult | null;
  memoryPeers: PerSubject<MemoryResult>;
  selection: SelectionResult | null;
  rest: { embedded?: RestResult; postgres?: RestResult };
  hub: HubResult | null;
  soak: SoakResult | null;
  floor: FloorResult | null;
  /** When each measurement ran (monotonic µs, the clock of V8's CPU profiles). */
  phases: Array<{ name: string; fromUs: number; toUs: number }>;
  /** --profile: per process, the CPU profile's file and a summary per measurement. */
  profiles: Record<string, { file: string; phases: Record<string, ProfileSummary> }>;
  targets?: TargetCheck[];
}

const GATEWAY = 'ipcola-server';
const AGENT = 'ipcola-agent';

function num(value: number | undefined | null): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function ratio(ours: number | undefined, other: number | undefined): string {
  if (
    ours === undefined ||
    other === undefined ||
    !Number.isFinite(ours) ||
    !Number.isFinite(other) ||
    other === 0
  ) {
    return '-';
  }
  return `${(ours / other).toFixed(2)}x`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function memoryKb(memory: MemoryResult | null | undefined, process: string): number | undefined {
  const entry = memory?.perProcess[process];
  return entry ? entry.bytesPerTunnel / 1024 : undefined;
}

export function evaluateTargets(r: Results): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const atLeast = (
    target: string,
    ours: number | undefined,
    peer: number | undefined,
    unit: string,
  ) => {
    const known =
      ours !== undefined && peer !== undefined && Number.isFinite(ours) && Number.isFinite(peer);
    checks.push({
      target,
      met: known ? (ours as number) >= (peer as number) : null,
      detail: known
        ? `ours ${num(ours)} vs ${num(peer)} ${unit} (${ratio(ours, peer)})`
        : 'not measured',
    });
  };
  atLeast(
    'new CONNECT tunnels/s >= Squid',
    r.churn.ipcola?.perSec,
    r.churn.squid?.perSec,
    'tunnels/s',
  );
  atLeast(
    'CONNECT throughput (10 MB download) >= Squid',
    r.download.ipcola?.medianMBps,
    r.download.squid?.medianMBps,
    'MB/s',
  );
  atLeast(
    'CONNECT throughput (1 KB requests in 50 tunnels) >= Squid',
    r.tunnel.ipcola?.perSec,
    r.tunnel.squid?.perSec,
    'req/s',
  );
  atLeast(
    'plain-HTTP forwarding >= proxy-chain',
    r.forward.ipcola?.perSec,
    r.forward['proxy-chain']?.perSec,
    'req/s',
  );
  if (r.forwardWrk.ipcola) {
    atLeast(
      'plain-HTTP forwarding >= proxy-chain (wrk)',
      r.forwardWrk.ipcola?.perSec,
      r.forwardWrk['proxy-chain']?.perSec,
      'req/s',
    );
  }
  const gatewayUs = r.churn.ipcola?.cpuUsPerOp[GATEWAY];
  const chainUs = r.churn['proxy-chain']?.cpuUsPerOp['proxy-chain'];
  const cpuKnown = gatewayUs !== undefined && chainUs !== undefined;
  checks.push({
    target: 'gateway CPU per new CONNECT tunnel <= proxy-chain',
    met: cpuKnown ? gatewayUs <= chainUs : null,
    detail: cpuKnown
      ? `${num(gatewayUs)} vs ${num(chainUs)} µs per tunnel (${ratio(gatewayUs, chainUs)})`
      : 'not measured',
  });
  const gatewayKb = memoryKb(r.memory, GATEWAY);
  checks.push({
    target: 'gateway memory < 30 KB per idle tunnel',
    met: gatewayKb === undefined ? null : gatewayKb < 30,
    detail:
      gatewayKb === undefined
        ? 'not measured'
        : `${num(gatewayKb)} KB per tunnel over ${r.memory?.tunnels} idle tunnels (agent: ${num(memoryKb(r.memory, AGENT))} KB)`,
  });
  const rest = r.rest.embedded;
  checks.push({
    target: '`npm start` (embedded) RSS at rest < 200 MB',
    met: rest ? rest.rssBytes < 200 * 2 ** 20 : null,
    detail: rest
      ? `${num(rest.rssBytes / 2 ** 20)} MB (on PostgreSQL+Redis: ${num((r.rest.postgres?.rssBytes ?? Number.NaN) / 2 ** 20)} MB)`
      : 'not measured',
  });
  const hubKb = r.hub ? r.hub.bytesPerTunnel / 1024 : undefined;
  checks.push({
    target: 'hub RSS < 50 KB per node tunnel',
    met: hubKb === undefined ? null : hubKb < 50,
    detail:
      hubKb === undefined
        ? 'not measured'
        : `${num(hubKb)} KB per tunnel over ${r.hub?.tunnels} node tunnels`,
  });
  return checks;
}

/** Sections 8-10: RSS at rest, node tunnels at one hub, the soak. */
function formatScale(r: Results, out: string[]): void {
  const mb = (bytes: number | undefined) => num(bytes === undefined ? undefined : bytes / 2 ** 20);
  if (r.rest.embedded || r.rest.postgres) {
    out.push('');
    out.push(
      '8. RSS at rest of the server as `npm start` runs it (MB, after start-up and a full GC):',
    );
    out.push(
      table(
        ['stores', 'RSS', 'JS heap used', 'JS heap total', 'external (incl. WebAssembly)'],
        (
          [
            ['embedded (PGlite, in-process)', r.rest.embedded],
            ['PostgreSQL + Redis', r.rest.postgres],
          ] as const
        )
          .filter(([, v]) => v)
          .map(([label, v]) => [
            label,
            mb(v?.rssBytes),
            mb(v?.heapUsedBytes),
            mb(v?.heapTotalBytes),
            mb(v?.externalBytes),
          ]),
      ),
    );
  }
  if (r.hub) {
    const h = r.hub;
    out.push('');
    out.push(
      `9. one hub holding ${h.tunnels.toLocaleString('en-US')} of ${h.wanted.toLocaleString('en-US')} simulated node tunnels ` +
        `(opened in ${num(h.openSeconds)} s): RSS ${mb(h.rssBeforeBytes)} -> ${mb(h.rssAfterBytes)} MB, ` +
        `${num(h.bytesPerTunnel / 1024)} KB per tunnel (JS heap + external ${num(h.heapBytesPerTunnel / 1024)} KB); ` +
        `idle heart-beats: ${num(h.idleCpuMsPerSecond)} ms CPU per second over ${num(h.idleSeconds)} s ` +
        `(PING every ${num(h.pingIntervalMs / 1000)} s: ${num(h.cpuUsPerPing)} µs per PING); ` +
        `the simulating process: ${mb(h.swarmRssBytes)} MB`,
    );
  }
  if (r.soak) {
    const k = r.soak;
    out.push('');
    out.push(
      `10. soak: ${num(k.seconds)} s of steady mixed load (${Object.entries(k.operations)
        .map(([n, v]) => `${n} ${v.toLocaleString('en-US')}`)
        .join(', ')}; ${k.errors} errors${k.firstError ? `, first: ${k.firstError}` : ''}), ` +
        `gateway ${num(k.cpuUsPerOperation)} µs CPU per operation (with the sampling GCs)`,
    );
    const last = k.samples[k.samples.length - 1];
    out.push(
      `    growth after ${num(k.warmUpSeconds)} s of warm-up (least squares): RSS ${num(k.rssMBPerHour)} MB/h, ` +
        `JS heap ${num(k.heapMBPerHour)} MB/h, external ${num(k.externalMBPerHour)} MB/h; ` +
        `at the end RSS ${mb(last?.rssBytes)} MB, heap ${mb(last?.heapUsedBytes)} MB; ` +
        `agent JS heap ${num(k.agentHeapMBPerHour)} MB/h`,
    );
    out.push(
      `    after the load: ${num(k.tunnelsOpenAfter)} tunnels counted open, ` +
        `${k.fdsAfter} open files (${k.fdsBefore} before)`,
    );
    out.push(`    leak suspects: ${k.suspects.length ? k.suspects.join('; ') : 'none'}`);
  }
}

export function formatReport(r: Results): string {
  const out: string[] = [];
  const m = r.meta;
  out.push('');
  out.push(`IPCola benchmark, ${m.mode} run, ${m.date} (${m.durationS.toFixed(0)} s)`);
  out.push(
    `machine: ${m.nproc} CPUs (${m.cpuModel}), Linux ${m.kernel}, Node ${m.node}, Squid ${m.squid ?? '-'}, ` +
      `proxy-chain ${m.proxyChain ?? '-'}, wrk ${m.wrk ?? '-'}, open files ${m.fdLimit}, ` +
      `load avg ${m.loadAvgStart.map((l) => l.toFixed(2)).join(' ')} at start`,
  );
  out.push(
    `pinning: load generator + target on CPU ${m.loadCore}; gateway, agent, Squid, proxy-chain on CPU ${m.proxyCore} ` +
      `(kernel says: ${Object.entries(m.pinning)
        .map(([name, cpus]) => `${name}=${cpus}`)
        .join(' ')})`,
  );
  out.push('');

  const header = [
    'measurement',
    'direct',
    'IPCola',
    'Squid',
    'proxy-chain',
    'ours/direct',
    'ours/Squid',
    'ours/p-chain',
  ];
  const rows: string[][] = [];
  const row = (
    label: string,
    values: { direct?: number; ours?: number; squid?: number; pc?: number },
  ) => {
    rows.push([
      label,
      num(values.direct),
      num(values.ours),
      num(values.squid),
      num(values.pc),
      ratio(values.ours, values.direct),
      ratio(values.ours, values.squid),
      ratio(values.ours, values.pc),
    ]);
  };
  const rate = (set: PerSubject<Aggregate>, oursName: SubjectName = 'ipcola', peers = true) => ({
    direct: set.direct?.perSec,
    ours: set[oursName]?.perSec,
    ...(peers ? { squid: set.squid?.perSec, pc: set['proxy-chain']?.perSec } : {}),
  });
  const lat = (
    set: PerSubject<Aggregate>,
    key: 'p50Ms' | 'p99Ms',
    oursName: SubjectName = 'ipcola',
    peers = true,
  ) => ({
    direct: set.direct?.[key],
    ours: set[oursName]?.[key],
    ...(peers ? { squid: set.squid?.[key], pc: set['proxy-chain']?.[key] } : {}),
  });
  const c = m.config as {
    connections?: number;
    churnConcurrency?: number;
    downloadReps?: number;
    latencyCount?: number;
  };
  if (Object.keys(r.forward).length)
    row(`1. forward 1 KB, ${c.connections} keep-alive conns (req/s)`, rate(r.forward));
  if (Object.keys(r.forwardWrk).length) row('   same, load from wrk (req/s)', rate(r.forwardWrk));
  if (Object.keys(r.tunnel).length) {
    row(`2. 1 KB inside ${c.connections} CONNECT tunnels (req/s)`, rate(r.tunnel));
    row(
      `   1 KB inside ${c.connections} SOCKS5 tunnels (req/s)`,
      rate(r.tunnel, 'ipcola-socks', false),
    );
  }
  if (Object.keys(r.churn).length) {
    row(`3. new CONNECT tunnels/s (c=${c.churnConcurrency})`, rate(r.churn));
    row('   new SOCKS5 tunnels/s', rate(r.churn, 'ipcola-socks', false));
  }
  if (Object.keys(r.download).length) {
    const dl = (name: SubjectName) => r.download[name]?.medianMBps;
    row(`4. 10 MB via CONNECT (MB/s, median of ${c.downloadReps})`, {
      direct: dl('direct'),
      ours: dl('ipcola'),
      squid: dl('squid'),
      pc: dl('proxy-chain'),
    });
    row('   10 MB via SOCKS5 (MB/s)', { direct: dl('direct'), ours: dl('ipcola-socks') });
  }
  if (Object.keys(r.latencyForward).length) {
    row(`5. latency, forward, c=1: p50 (ms, lower=better)`, lat(r.latencyForward, 'p50Ms'));
    row('   latency, forward, c=1: p99 (ms)', lat(r.latencyForward, 'p99Ms'));
    row('   latency, CONNECT tunnel: p50 (ms)', lat(r.latencyTunnel, 'p50Ms'));
    row('   latency, CONNECT tunnel: p99 (ms)', lat(r.latencyTunnel, 'p99Ms'));
    row(
      '   latency, SOCKS5 tunnel: p50 (ms)',
      lat(r.latencyTunnel, 'p50Ms', 'ipcola-socks', false),
    );
    row(
      '   latency, SOCKS5 tunnel: p99 (ms)',
      lat(r.latencyTunnel, 'p99Ms', 'ipcola-socks', false),
    );
  }
  if (r.memory) {
    const peer = (name: SubjectName, proc: string) => memoryKb(r.memoryPeers[name], proc);
    const heapKb = (memory: MemoryResult | null | undefined, proc: string) => {
      const v = memory?.perProcess[proc]?.heapBytesPerTunnel;
      return v === undefined ? undefined : v / 1024;
    };
    const restMb = (memory: MemoryResult | null | undefined, proc: string) => {
      const v = memory?.perProcess[proc]?.beforeBytes;
      return v === undefined ? undefined : v / 2 ** 20;
    };
    row(`6. RSS per idle tunnel (KB, ${r.memory.tunnels} tunnels; ours = gateway)`, {
      ours: memoryKb(r.memory, GATEWAY),
      squid: peer('squid', 'squid'),
      pc: peer('proxy-chain', 'proxy-chain'),
    });
    row('   JS heap + external per idle tunnel (KB)', {
      ours: heapKb(r.memory, GATEWAY),
      pc: heapKb(r.memoryPeers['proxy-chain'], 'proxy-chain'),
    });
    row('   agent RSS per idle tunnel (KB)', { ours: memoryKb(r.memory, AGENT) });
    row('   agent JS heap + external per idle tunnel (KB)', { ours: heapKb(r.memory, AGENT) });
    row('   gateway + agent RSS per idle tunnel (KB)', {
      ours: (memoryKb(r.memory, GATEWAY) ?? Number.NaN) + (memoryKb(r.memory, AGENT) ?? Number.NaN),
      squid: peer('squid', 'squid'),
      pc: peer('proxy-chain', 'proxy-chain'),
    });
    row('   RSS at rest, before the test (MB; ours = gateway)', {
      ours: restMb(r.memory, GATEWAY),
      squid: restMb(r.memoryPeers.squid, 'squid'),
      pc: restMb(r.memoryPeers['proxy-chain'], 'proxy-chain'),
    });
    row('   agent RSS at rest (MB)', { ours: restMb(r.memory, AGENT) });
  }
  if (rows.length) {
    out.push(table(header, rows));
    out.push(
      'Ratios are ours/peer: above 1x is better for rates, below 1x is better for latency and memory.',
    );
  }

  // Where the CPU goes: per operation, on the proxy core.
  const cpuRows: string[][] = [];
  const cpuRow = (label: string, set: PerSubject<Aggregate>, oursName: SubjectName = 'ipcola') => {
    const g = set[oursName]?.cpuUsPerOp[GATEWAY];
    const a = set[oursName]?.cpuUsPerOp[AGENT];
    const total = g !== undefined && a !== undefined ? g + a : undefined;
    const squid = set.squid?.cpuUsPerOp.squid;
    cpuRows.push([
      label,
      num(g),
      num(a),
      num(total),
      num(squid),
      num(set['proxy-chain']?.cpuUsPerOp['proxy-chain']),
      ratio(total, squid),
      ratio(g, squid),
    ]);
  };
  if (Object.keys(r.forward).length) cpuRow('forward 1 KB (µs/request)', r.forward);
  if (Object.keys(r.tunnel).length) {
    cpuRow('1 KB in CONNECT tunnel (µs/request)', r.tunnel);
    cpuRow('1 KB in SOCKS5 tunnel (µs/request)', r.tunnel, 'ipcola-socks');
  }
  if (Object.keys(r.churn).length) {
    cpuRow('new CONNECT tunnel (µs/tunnel)', r.churn);
    cpuRow('new SOCKS5 tunnel (µs/tunnel)', r.churn, 'ipcola-socks');
  }
  if (Object.keys(r.download).length) {
    const d = (name: SubjectName, proc: string) => r.download[name]?.cpuMsPerMB[proc];
    const g = d('ipcola', GATEWAY);
    const a = d('ipcola', AGENT);
    const total = g !== undefined && a !== undefined ? g + a : undefined;
    cpuRows.push([
      '10 MB via CONNECT (CPU ms/MB)',
      num(g),
      num(a),
      num(total),
      num(d('squid', 'squid')),
      num(d('proxy-chain', 'proxy-chain')),
      ratio(total, d('squid', 'squid')),
      ratio(g, d('squid', 'squid')),
    ]);
  }
  if (cpuRows.length) {
    out.push('');
    out.push(
      'CPU on the proxy core per operation (user+system, from /proc; lower is better). In production the\n' +
        'agent runs on the exit node, so "gateway/Squid" is what a gateway host pays compared with Squid:',
    );
    out.push(
      table(
        [
          '',
          'gateway',
          'agent',
          'ours total',
          'Squid',
          'proxy-chain',
          'ours/Squid',
          'gateway/Squid',
        ],
        cpuRows,
      ),
    );
  }

  if (r.floor) {
    const f = r.floor;
    out.push('');
    out.push(
      '3b. new CONNECT tunnel against the floors of the same architecture (a relay whose tunnels\n' +
        'are streams to an exit process, nothing else: over HTTP/2, h2-floor.ts, and over a minimal\n' +
        'multiplexer, mux-floor.ts), CPU µs per tunnel:',
    );
    out.push(
      table(
        [
          '',
          'tunnels/s',
          'front (gateway/relay)',
          'of it kernel',
          'writes',
          'back (agent/exit)',
          'front/proxy-chain',
        ],
        (
          [
            ['IPCola', f.ipcola],
            ['Node HTTP/2 floor', f.floor],
            ['minimal JS mux floor', f.mux],
            ['proxy-chain', f.proxyChain],
          ] as const
        ).map(([label, row]) => [
          label,
          num(row.perSec),
          num(row.frontUs),
          num(row.frontSysUs),
          row.frontWrites.toFixed(2),
          row === f.proxyChain ? '-' : num(row.backUs),
          ratio(row.frontUs, f.proxyChain.frontUs),
        ]),
      ),
    );
    // The gateway's tunnels are multiplexer streams (tunnel v2): that floor is its own.
    out.push(
      `   the gateway above the multiplexer floor: ${num(f.ipcola.frontUs - f.mux.frontUs)} µs ` +
        'per tunnel (authentication, exit selection, metering, limits, time-outs, flow control)',
    );
  }

  if (r.selection) {
    const s = r.selection;
    out.push('');
    out.push(
      `7. exit selection, ExitIndex.select() with ${s.exits.toLocaleString('en-US')} exits ` +
        `(${s.countries} countries x ${s.citiesPerCountry} cities, 3 types; built in ${num(s.buildMs)} ms, ` +
        `${num(s.heapBytesPerExit)} heap bytes per exit):`,
    );
    out.push(
      table(
        ['targeting', 'ns/op (median)', 'selections/s', 'ops per batch'],
        s.results.map((x) => [x.name, num(x.nsPerOp), num(1e9 / x.nsPerOp), String(x.opsPerBatch)]),
      ),
    );
  }

  formatScale(r, out);

  const targets = r.targets ?? evaluateTargets(r);
  out.push('');
  out.push('Targets from the issue:');
  for (const t of targets) {
    out.push(
      `  [${t.met === null ? '  ?   ' : t.met ? '  met ' : 'MISSED'}] ${t.target}: ${t.detail}`,
    );
  }

  for (const [name, profile] of Object.entries(r.profiles)) {
    out.push('');
    out.push(`CPU profile of the ${name} (${profile.file}), self time per measurement:`);
    for (const [phase, p] of Object.entries(profile.phases)) {
      if (p.totalMs < 1) continue;
      out.push(
        `  ${phase}: ${num(p.totalMs)} ms busy; ${p.byPlace
          .slice(0, 7)
          .map((x) => `${x.place} ${x.pct.toFixed(0)}%`)
          .join(', ')}`,
      );
      for (const f of p.top.slice(0, 10))
        out.push(`    ${f.pct.toFixed(1).padStart(5)}%  ${f.fn}  ${f.where}`);
    }
  }

  out.push('');
  out.push(`IPCola log lines at warn level or above during the run: ${m.logProblems.length}`);
  for (const line of m.logProblems.slice(0, 10)) out.push(`  ${line.slice(0, 300)}`);
  if (m.warnings.length) {
    out.push('');
    out.push('Warnings:');
    for (const w of m.warnings) out.push(`  - ${w}`);
  }
  out.push('');
  return out.join('\n');
}
