/** 6. Memory per idle tunnel, first, on a gateway that has carried little so far. */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, sleep } from '../lib/context.ts';
import { closeAll, holdTunnels } from '../lib/load.ts';
import { collectGarbage, type Managed, type NodeMemory, procStats } from '../lib/processes.ts';
import type { MemoryResult, SubjectName } from '../lib/report.ts';

export const name = 'memory';

/** Collected-heap readings: a full GC in every Node process, then RSS from /proc. */
async function steady(procs: Managed[]) {
  let node: Array<NodeMemory | null> = [];
  for (let i = 0; i < 2; i++) {
    node = await Promise.all(procs.map((p) => collectGarbage(p)));
    await sleep(300);
  }
  const stats = await Promise.all(procs.map((p) => procStats(p.pid)));
  return procs.map((_, i) => ({
    rss: (stats[i] as { rssBytes: number }).rssBytes,
    heap: node[i] ? (node[i] as NodeMemory).heapUsed + (node[i] as NodeMemory).external : null,
  }));
}

async function memoryOf(ctx: SubjectsContext, name: SubjectName): Promise<MemoryResult> {
  const { config, origin, warn } = ctx;
  const subject = ctx.subjects[name];
  const procs = ctx.procsOf[name];
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
}

export async function run(ctx: SubjectsContext): Promise<void> {
  const { results } = ctx;
  results.memory = await memoryOf(ctx, 'ipcola');
  if (ctx.config.memoryPeers) {
    results.memoryPeers.squid = await memoryOf(ctx, 'squid');
    results.memoryPeers['proxy-chain'] = await memoryOf(ctx, 'proxy-chain');
  }
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: false, run };
