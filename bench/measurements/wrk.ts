/** 1. The forwarding figure cross-checked with wrk as the load generator (when installed). */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, PEERS } from '../lib/context.ts';
import { rateRounds } from '../lib/rounds.ts';
import { wrkRate } from '../lib/wrk.ts';

export const name = 'wrk';

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results } = ctx;
  const wrk = results.meta.wrk;
  if (!wrk) {
    ctx.warn('wrk is not installed: the wrk cross-check is skipped (apt-get install wrk)');
    return;
  }
  log(`forwarding with wrk ${wrk}: ${config.connections} connections`);
  results.forwardWrk = await rateRounds(
    ctx,
    PEERS,
    (subject) =>
      wrkRate(subject, origin, {
        connections: config.connections,
        durationMs: config.sliceMs,
      }),
    1,
  );
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
