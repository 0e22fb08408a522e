/** 5. Latency of one request at a time, forwarded and inside a tunnel. */
import type { Subject } from '../lib/client.ts';
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, PEERS, WITH_SOCKS } from '../lib/context.ts';
import { serialLatency } from '../lib/load.ts';
import { rateRounds } from '../lib/rounds.ts';

export const name = 'latency';

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results } = ctx;
  log(`latency: ${config.latencyCount} sequential 1 KB requests per subject`);
  const latency = (mode: 'forward' | 'tunnel') => (subject: Subject) =>
    serialLatency(subject, origin, {
      mode,
      warmup: 50,
      count: config.latencyCount,
      maxMs: 30_000,
    });
  results.latencyForward = await rateRounds(ctx, PEERS, latency('forward'), 1);
  results.latencyTunnel = await rateRounds(ctx, WITH_SOCKS, latency('tunnel'), 1);
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
