/**
 * 9. One hub holding many node tunnels: a server of its own (as `npm start` runs it, on
 * the proxy core), N nodes registered through the API, and node-swarm.ts processes (on
 * the load core) that connect N agents' tunnel clients to its hub. Reports the server's
 * RSS per tunnel and the CPU its idle heart-beats cost.
 *
 * Memory per tunnel is (RSS with N tunnels - RSS with the first WARM tunnels) / (N - WARM),
 * both after a full GC: the first tunnels load the hub's code paths, which are a fixed
 * cost, not a per-tunnel one.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Measurement, RunContext } from '../lib/context.ts';
import { log, sleep } from '../lib/context.ts';
import {
  BENCH_DIR,
  collectGarbage,
  LOAD_CORE,
  type Managed,
  type NodeMemory,
  procStats,
  signUp,
  spawnPinned,
  startServer,
} from '../lib/processes.ts';

export const name = 'hub';

const WARM = 100;
/** The hub's PING interval (HUB_PING_INTERVAL_MS), set explicitly so the report can say it. */
const PING_INTERVAL_MS = 2_000;

/** Starts a swarm for `tokens`; resolves with it once it printed its `done` line. */
async function startSwarm(
  label: string,
  hubPort: number,
  tokensFile: string,
): Promise<{ swarm: Managed; up: number; failed: number; firstError: string | null; ms: number }> {
  let onDone:
    | ((line: { up: number; failed: number; firstError: string | null; ms: number }) => void)
    | undefined;
  const swarm = spawnPinned(
    label,
    LOAD_CORE,
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(BENCH_DIR, 'node-swarm.ts'),
      '--hub',
      `127.0.0.1:${hubPort}`,
      '--tokens',
      tokensFile,
    ],
    {
      onLine: (line) => {
        try {
          const parsed = JSON.parse(line);
          if (parsed.done) onDone?.(parsed);
        } catch {}
      },
    },
  );
  const done = await new Promise<{
    up: number;
    failed: number;
    firstError: string | null;
    ms: number;
  }>((resolve, reject) => {
    onDone = resolve;
    swarm.child.once('exit', (code) =>
      reject(new Error(`${label} exited (${code}): ${swarm.stderr().slice(-500)}`)),
    );
  });
  return { swarm, ...done };
}

/** Two full collections, then RSS from /proc and the collected heap. */
async function collected(server: Managed): Promise<{ rss: number; heap: number }> {
  let memory: NodeMemory | null = null;
  for (let i = 0; i < 2; i++) {
    memory = await collectGarbage(server);
    await sleep(500);
  }
  const { rssBytes } = await procStats(server.pid);
  return { rss: rssBytes, heap: memory ? memory.heapUsed + memory.external : Number.NaN };
}

export async function run({ config, results, warn }: RunContext): Promise<void> {
  // The server holds one descriptor per tunnel (and the swarm one per node).
  const fdRoom = results.meta.fdLimit - 2_000;
  const wanted = Math.max(Math.min(config.hubTunnels, fdRoom), WARM * 2);
  if (wanted < config.hubTunnels) {
    warn(
      `hub: open-files limit ${results.meta.fdLimit}: ${wanted} tunnels, not ${config.hubTunnels}`,
    );
  }
  const started = await startServer({
    env: { HUB_PING_INTERVAL_MS: String(PING_INTERVAL_MS) },
  });
  const swarms: Managed[] = [];
  try {
    log(`hub: registering ${wanted} nodes through the API`);
    const api = await signUp(started.ports.api);
    const tokens: string[] = [];
    const registerStarted = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < wanted) {
          next++;
          tokens.push((await api('/v1/nodes')).token as string);
        }
      }),
    );
    log(
      `hub: ${wanted} nodes registered in ${((performance.now() - registerStarted) / 1000).toFixed(1)} s`,
    );
    const warmFile = path.join(started.dataDir, 'swarm-warm.tokens');
    const restFile = path.join(started.dataDir, 'swarm-rest.tokens');
    await writeFile(warmFile, tokens.slice(0, WARM).join('\n'));
    await writeFile(restFile, tokens.slice(WARM).join('\n'));

    const warm = await startSwarm('node-swarm-warm', started.ports.hub, warmFile);
    swarms.push(warm.swarm);
    await sleep(2_000);
    const before = await collected(started.server);
    log(`hub: ${warm.up} warm-up tunnels up; RSS ${(before.rss / 2 ** 20).toFixed(0)} MB`);

    const rest = await startSwarm('node-swarm', started.ports.hub, restFile);
    swarms.push(rest.swarm);
    const failed = warm.failed + rest.failed;
    if (failed > 0)
      warn(`hub: ${failed} node tunnels failed (${warm.firstError ?? rest.firstError})`);
    log(`hub: ${rest.up} more tunnels up in ${(rest.ms / 1000).toFixed(1)} s`);
    // Let the exit proofs and the first heart-beats pass.
    await sleep(3_000);
    const after = await collected(started.server);
    await sleep(2_000);

    const cpuBefore = await procStats(started.server.pid);
    await sleep(config.hubIdleSeconds * 1000);
    const cpuAfter = await procStats(started.server.pid);
    const idleCpuMsPerSecond = (cpuAfter.cpuMs - cpuBefore.cpuMs) / config.hubIdleSeconds;
    const tunnels = warm.up + rest.up;
    const pingsPerSecond = tunnels / (PING_INTERVAL_MS / 1000);
    const swarmRss = (await Promise.all(swarms.map((s) => procStats(s.pid)))).reduce(
      (sum, s) => sum + s.rssBytes,
      0,
    );
    results.hub = {
      wanted,
      tunnels,
      openSeconds: rest.ms / 1000,
      rssBeforeBytes: before.rss,
      rssAfterBytes: after.rss,
      bytesPerTunnel: (after.rss - before.rss) / rest.up,
      heapBytesPerTunnel: (after.heap - before.heap) / rest.up,
      idleSeconds: config.hubIdleSeconds,
      idleCpuMsPerSecond,
      pingIntervalMs: PING_INTERVAL_MS,
      cpuUsPerPing: (idleCpuMsPerSecond * 1000) / pingsPerSecond,
      swarmRssBytes: swarmRss,
    };
    log(
      `hub: ${tunnels} tunnels, ${(results.hub.bytesPerTunnel / 1024).toFixed(1)} KB each; ` +
        `idle ${idleCpuMsPerSecond.toFixed(1)} ms CPU/s`,
    );
    for (const line of started.problems.slice(0, 5)) warn(`hub: server said ${line.slice(0, 300)}`);
  } finally {
    await Promise.all(swarms.map((s) => s.stop()));
    await started.stop();
  }
}

export const measurement: Measurement = { name, stage: 'after-subjects', run };
