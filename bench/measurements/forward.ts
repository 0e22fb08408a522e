/** 1. Plain-HTTP forwarding (absolute URI) over 50 keep-alive connections. */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, PEERS } from '../lib/context.ts';
import { keepAliveRate } from '../lib/load.ts';
import { rateRounds } from '../lib/rounds.ts';

export const name = 'forward';

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results } = ctx;
  log(
    `forwarding: 1 KB over ${config.connections} keep-alive connections, ${config.rounds} x ${config.sliceMs} ms`,
  );
  results.forward = await rateRounds(ctx, PEERS, (subject) =>
    keepAliveRate(subject, origin, {
      connections: config.connections,
      warmupMs: config.warmupMs,
      durationMs: config.sliceMs,
      maxOps: 2_000_000,
      mode: 'forward',
    }),
  );
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
