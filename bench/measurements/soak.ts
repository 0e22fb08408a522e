/**
 * 10. Soak (`--soak 3m`): a steady, paced mix through our gateway for minutes: 1 KB
 * requests forwarded over keep-alive connections (each connection replaced after 100
 * requests), and new CONNECT and SOCKS5 tunnels with one request each. Every 5 s, a full
 * GC in the server and the agent, then their RSS and heap. Memory growth per hour is the
 * least-squares slope after the warm-up. Leak suspects: a slope that would add more than
 * SUSPECT_MB_PER_HOUR, tunnels the gateway still counts open once the load stopped, and
 * file descriptors that stayed open.
 *
 * Paced, not flat out (RATE operations per second in all), so that the figure is about
 * what stays behind, not about how hard a shared core could be pushed.
 */
import { readdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { buildRequest, HttpConn, openForwarding, openTunnel, type Subject } from '../lib/client.ts';
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, sleep } from '../lib/context.ts';
import { collectGarbage, type Managed, procStats } from '../lib/processes.ts';
import type { SoakResult } from '../lib/report.ts';

export const name = 'soak';

/** Operations per second, per kind. */
const RATE = { forward: 100, connect: 50, socks: 50 };
const SAMPLE_EVERY_MS = 5_000;
const SUSPECT_MB_PER_HOUR = 20;
const FD_SLACK = 5;

/** Parses `90s`, `3m`, `1h` or plain seconds; null when it is none of those. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(text.trim());
  if (!match) return null;
  const factor = { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  return Number(match[1]) * factor;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

const fdCount = async (pid: number) => (await readdir(`/proc/${pid}/fd`)).length;

async function openTunnelsNow(api: { host: string; port: number }): Promise<number> {
  const text = await (await fetch(`http://${api.host}:${api.port}/metrics`)).text();
  const match = /^ipcola_tunnels_open(?:\{[^}]*\})? (\d+)/m.exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

/** An operation of one worker, and what it leaves open at the end. */
interface Worker {
  op(): Promise<void>;
  close(): void;
}

/**
 * Runs the workers' operations about `perSecond` times a second in all until `until`;
 * counts successes and errors.
 */
async function paced(
  perSecond: number,
  until: number,
  newWorker: () => Worker,
  tally: { ok: number; errors: number; firstError: string | null },
): Promise<void> {
  // Ten workers, each taking its share of the rate; an operation slower than its slot
  // simply delays that worker (the load never piles up).
  const workers = 10;
  const gapMs = (1000 * workers) / perSecond;
  await Promise.all(
    Array.from({ length: workers }, async (_, i) => {
      const worker = newWorker();
      await sleep((gapMs * i) / workers);
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          await worker.op();
          tally.ok++;
        } catch (error) {
          tally.errors++;
          tally.firstError ??= (error as Error).message;
        }
        await sleep(Math.max(0, gapMs - (performance.now() - t0)));
      }
      worker.close();
    }),
  );
}

/** Forwarded 1 KB requests on a keep-alive connection, replaced after 100 requests. */
function forwarding(subject: Subject, ctx: SubjectsContext): () => Worker {
  const request = buildRequest(subject, ctx.origin, '/1k', { forward: true });
  return () => {
    let conn: HttpConn | null = null;
    let used = 0;
    return {
      async op() {
        if (!conn?.alive || used >= 100) {
          conn?.close();
          conn = new HttpConn(await openForwarding(subject, ctx.origin));
          used = 0;
        }
        used++;
        const response = await conn.request(request);
        if (response.status !== 200) throw new Error(`forward: HTTP ${response.status}`);
      },
      close: () => conn?.close(),
    };
  };
}

/** A new tunnel, one tiny request with `Connection: close`, closed. */
function tunnelling(subject: Subject, ctx: SubjectsContext): () => Worker {
  const request = buildRequest(subject, ctx.origin, '/tiny', { forward: false, close: true });
  return () => ({
    async op() {
      const conn = new HttpConn(await openTunnel(subject, ctx.origin));
      try {
        const response = await conn.request(request);
        if (response.status !== 200) throw new Error(`${subject.name}: HTTP ${response.status}`);
      } finally {
        conn.close();
      }
    },
    close() {},
  });
}

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, results } = ctx;
  const seconds = config.soakSeconds;
  if (seconds <= 0) return;
  const [server, agent] = ctx.procsOf.ipcola as [Managed, Managed];
  const warmUpSeconds = Math.min(60, seconds / 3);
  const fdsBefore = await fdCount(server.pid);
  const cpuBefore = await procStats(server.pid);
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  const tallies = {
    forward: { ok: 0, errors: 0, firstError: null as string | null },
    connect: { ok: 0, errors: 0, firstError: null as string | null },
    socks: { ok: 0, errors: 0, firstError: null as string | null },
  };
  log(`soak: ${seconds} s of paced load (${JSON.stringify(RATE)} per second)`);

  const samples: SoakResult['samples'] = [];
  const agentSamples: Array<[number, number]> = [];
  const sampling = (async () => {
    while (performance.now() < until) {
      await sleep(SAMPLE_EVERY_MS);
      const [memory, agentMemory] = await Promise.all([
        collectGarbage(server),
        collectGarbage(agent),
      ]);
      const s = (performance.now() - t0) / 1000;
      const [stats, agentStats] = await Promise.all([procStats(server.pid), procStats(agent.pid)]);
      samples.push({
        s,
        rssBytes: stats.rssBytes,
        heapUsedBytes: memory?.heapUsed ?? Number.NaN,
        externalBytes: memory?.external ?? Number.NaN,
      });
      agentSamples.push([s, agentMemory?.heapUsed ?? agentStats.rssBytes]);
      if (samples.length % 12 === 0) {
        log(
          `soak: ${s.toFixed(0)} s, gateway RSS ${(stats.rssBytes / 2 ** 20).toFixed(0)} MB, ` +
            `heap ${((memory?.heapUsed ?? 0) / 2 ** 20).toFixed(1)} MB, ${tallies.forward.ok + tallies.connect.ok + tallies.socks.ok} ops`,
        );
      }
    }
  })();
  await Promise.all([
    paced(RATE.forward, until, forwarding(ctx.subjects.ipcola, ctx), tallies.forward),
    paced(RATE.connect, until, tunnelling(ctx.subjects.ipcola, ctx), tallies.connect),
    paced(RATE.socks, until, tunnelling(ctx.subjects['ipcola-socks'], ctx), tallies.socks),
    sampling,
  ]);
  const cpuAfter = await procStats(server.pid);

  // Once the load is gone, what it opened must be gone too (a few seconds for closes).
  let openAfter = Number.NaN;
  let fdsAfter = Number.NaN;
  for (let i = 0; i < 20; i++) {
    openAfter = await openTunnelsNow(ctx.ipcolaApi).catch(() => Number.NaN);
    fdsAfter = await fdCount(server.pid);
    if (openAfter === 0 && fdsAfter <= fdsBefore) break;
    await sleep(500);
  }

  const after = samples.filter((x) => x.s >= warmUpSeconds);
  const perHour = (pick: (x: SoakResult['samples'][number]) => number) =>
    (slope(after.map((x) => [x.s, pick(x) / 2 ** 20])) as number) * 3600;
  const operations = {
    forward: tallies.forward.ok,
    connect: tallies.connect.ok,
    socks: tallies.socks.ok,
  };
  const total = operations.forward + operations.connect + operations.socks;
  const agentHeapMBPerHour =
    slope(agentSamples.filter(([s]) => s >= warmUpSeconds).map(([s, v]) => [s, v / 2 ** 20])) *
    3600;
  const result: SoakResult = {
    seconds,
    warmUpSeconds,
    operations,
    errors: tallies.forward.errors + tallies.connect.errors + tallies.socks.errors,
    firstError:
      tallies.forward.firstError ?? tallies.connect.firstError ?? tallies.socks.firstError,
    samples,
    rssMBPerHour: perHour((x) => x.rssBytes),
    heapMBPerHour: perHour((x) => x.heapUsedBytes),
    externalMBPerHour: perHour((x) => x.externalBytes),
    agentHeapMBPerHour,
    cpuUsPerOperation: ((cpuAfter.cpuMs - cpuBefore.cpuMs) * 1000) / Math.max(1, total),
    tunnelsOpenAfter: openAfter,
    fdsBefore,
    fdsAfter,
    suspects: [],
  };
  const suspect = (what: string, value: number) => {
    if (value > SUSPECT_MB_PER_HOUR) result.suspects.push(`${what} grows ${value.toFixed(0)} MB/h`);
  };
  suspect('gateway RSS', result.rssMBPerHour);
  suspect('gateway JS heap', result.heapMBPerHour);
  suspect('gateway external memory', result.externalMBPerHour);
  suspect('agent JS heap', agentHeapMBPerHour);
  if (openAfter !== 0)
    result.suspects.push(`${openAfter} tunnels still counted open after the load`);
  // A few descriptors may open lazily (log files, database segments): not a leak.
  if (fdsAfter > fdsBefore + FD_SLACK) {
    result.suspects.push(`${fdsAfter - fdsBefore} more open files than before the load`);
  }
  if (after.length < 6) {
    result.suspects.push(`only ${after.length} samples after the warm-up: run longer for a slope`);
  }
  results.soak = result;
  log(
    `soak: ${total} operations, RSS ${result.rssMBPerHour.toFixed(1)} MB/h, heap ${result.heapMBPerHour.toFixed(1)} MB/h`,
  );
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
