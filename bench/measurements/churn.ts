/** 3. New tunnels per second: open, one request with `Connection: close`, close. */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, WITH_SOCKS } from '../lib/context.ts';
import { tunnelChurn } from '../lib/load.ts';
import { rateRounds } from '../lib/rounds.ts';

export const name = 'churn';

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results } = ctx;
  log(`new tunnels: ${config.churnTotal} per round, concurrency ${config.churnConcurrency}`);
  results.churn = await rateRounds(ctx, WITH_SOCKS, (subject) =>
    tunnelChurn(subject, origin, {
      concurrency: config.churnConcurrency,
      total: config.churnTotal,
      warmup: 50,
      maxMs: 20_000,
    }),
  );
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
