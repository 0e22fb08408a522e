/** 2. 1 KB requests inside 50 open CONNECT / SOCKS5 tunnels. */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, WITH_SOCKS } from '../lib/context.ts';
import { keepAliveRate } from '../lib/load.ts';
import { rateRounds } from '../lib/rounds.ts';

export const name = 'tunnel';

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results } = ctx;
  log(`tunnels: 1 KB inside ${config.connections} open CONNECT/SOCKS tunnels`);
  results.tunnel = await rateRounds(ctx, WITH_SOCKS, (subject) =>
    keepAliveRate(subject, origin, {
      connections: config.connections,
      warmupMs: config.warmupMs,
      durationMs: config.sliceMs,
      maxOps: 2_000_000,
      mode: 'tunnel',
    }),
  );
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
