/** 4. 10 MB downloads through CONNECT (and SOCKS5), each on a fresh tunnel. */
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log, WITH_SOCKS } from '../lib/context.ts';
import { download } from '../lib/load.ts';
import { accounted } from '../lib/rounds.ts';

export const name = 'download';

const TEN_MB = 10 * 1024 * 1024;
/**
 * Untimed downloads first: a Node process's heap limits settle only after some 100 MB
 * have passed through it, and until then its figures swing by a factor of two.
 */
const DOWNLOAD_WARMUP = 10;

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, procsOf, results, subjects, target, warn } = ctx;
  log(
    `downloads: 10 MB x ${config.downloadReps} per subject (after ${DOWNLOAD_WARMUP} for warm-up)`,
  );
  for (const name of WITH_SOCKS) {
    // The large-transfer path has its own warm-up (its code is not hot from the rest).
    await download(subjects[name], origin, {
      path: '/10m',
      bytes: TEN_MB,
      reps: DOWNLOAD_WARMUP,
      maxMs: 20_000,
    });
    const { result, cpu } = await accounted(procsOf[name], target, () =>
      download(subjects[name], origin, {
        path: '/10m',
        bytes: TEN_MB,
        reps: config.downloadReps,
        maxMs: 60_000,
      }),
    );
    const cpuMsPerMB: Record<string, number> = {};
    const mb = (result.runs.length * TEN_MB) / 1e6;
    for (const p of procsOf[name]) cpuMsPerMB[p.name] = (cpu.processMs[p.name] ?? 0) / mb;
    results.download[name] = { ...result, cpuMsPerMB };
    if (result.errors > 0)
      warn(`${name}: ${result.errors} downloads failed (${result.firstError})`);
  }
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
