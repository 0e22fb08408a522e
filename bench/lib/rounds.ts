/** Timed runs with their CPU bill: per process, and what else ran on each core meanwhile. */
import { performance } from 'node:perf_hooks';
import type { Subject } from './client.ts';
import type { SubjectsContext } from './context.ts';
import { median, type RateResult } from './load.ts';
import {
  CLOCK_TICKS_PER_SECOND,
  cpuTimes,
  LOAD_CORE,
  type Managed,
  PROXY_CORE,
  type ProcStats,
  procStats,
  reapedChildrenCpuMs,
} from './processes.ts';
import type { Aggregate, SubjectName } from './report.ts';

/** CPU each process used, and how busy each core was, while `work` ran. */
export interface CpuAccount {
  wallMs: number;
  /** CPU ms per process name (our server, agent, squid, proxy-chain, target, harness). */
  processMs: Record<string, number>;
  /** Of processMs, the kernel's part, per subject process (not the harness). */
  processSysMs: Record<string, number>;
  /** Write system calls per subject process. */
  processWrites: Record<string, number>;
  /** Share of the proxy core used by anything but the subject's own processes. */
  proxyCoreForeignPct: number;
  /** Share of the load core used by anything but the harness and the target. */
  loadCoreForeignPct: number;
}

export async function accounted<T>(
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
  const processSysMs: Record<string, number> = {};
  const processWrites: Record<string, number> = {};
  procs.forEach((p, i) => {
    const [a, b] = [after[i], before[i]] as [ProcStats, ProcStats];
    processMs[p.name] = a.cpuMs - b.cpuMs;
    processSysMs[p.name] = a.sysMs - b.sysMs;
    processWrites[p.name] = a.writeCalls - b.writeCalls;
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
      processSysMs,
      processWrites,
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

/**
 * `rounds` rounds over `names` in a rotating order; per subject the median round and the
 * CPU per operation, with a warning for errors and for cores that other processes used.
 */
export async function rateRounds(
  ctx: SubjectsContext,
  names: SubjectName[],
  run: (subject: Subject) => Promise<RateResult>,
  rounds = ctx.config.rounds,
): Promise<Partial<Record<SubjectName, Aggregate>>> {
  const { procsOf, subjects, target, warn } = ctx;
  const runs = new Map<SubjectName, Array<{ result: RateResult; cpu: CpuAccount }>>();
  for (let r = 0; r < rounds; r++) {
    // Rotate the order so that no subject always runs first or last.
    const order = names.map((_, i) => names[(i + r) % names.length] as SubjectName);
    for (const name of order) {
      const measured = await accounted(procsOf[name], target, () => run(subjects[name]));
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
}
