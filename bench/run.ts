/**
 * `npm run bench`: IPCola (gateway + one agent) side by side with no proxy, Squid and
 * proxy-chain, in one run. See bench/README.md.
 *
 *   npm run bench                  full run (~3-4 minutes)
 *   npm run bench -- --quick       smoke run (1-2 minutes)
 *   npm run bench -- --profile     also write CPU profiles of the gateway and the agent
 *   npm run bench -- --only forward,churn   run only some measurements
 *
 * The harness re-executes itself under `taskset -c 0` with the open-files limit raised
 * as far as allowed; every proxy process is started under `taskset -c 1`. The measurements
 * themselves are in measurements/, one file each, listed in measurements/index.ts.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FULL, QUICK } from './lib/config.ts';
import { log, type Measurement, type RunContext, type SubjectsContext } from './lib/context.ts';
import { newResults } from './lib/meta.ts';
import { BENCH_DIR, killAll, LOAD_CORE, PROXY_CORE, squidVersion } from './lib/processes.ts';
import { summariseProfiles } from './lib/profiles.ts';
import { evaluateTargets, formatReport } from './lib/report.ts';
import { startSubjects } from './lib/subjects.ts';
import { warmUp } from './lib/warm-up.ts';
import { wrkVersion } from './lib/wrk.ts';
import {
  parseDuration,
  SOAK,
  selectMeasurements,
  UnknownMeasurementError,
} from './measurements/index.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
    soak: { type: 'string' },
    out: { type: 'string' },
  },
});

async function main(selected: Measurement[]): Promise<void> {
  const startedAt = Date.now();
  const config = { ...(args.quick ? QUICK : FULL), soakSeconds: soakSeconds ?? 0 };
  const wrk = wrkVersion();
  const squid = squidVersion();
  if (!squid) throw new Error('squid is not installed (apt-get install squid)');

  const results = await newResults(args.quick ? 'quick' : 'full', config, { squid, wrk });
  const warn = (message: string) => {
    results.meta.warnings.push(message);
    log(`WARNING: ${message}`);
  };
  if (PROXY_CORE === LOAD_CORE)
    warn('fewer than 2 CPUs: proxies share the load core; ratios are not meaningful');
  if (results.meta.fdLimit < config.idleTunnels + 2_000) {
    warn(`open-files limit ${results.meta.fdLimit} is low for ${config.idleTunnels} idle tunnels`);
    config.idleTunnels = Math.max(100, results.meta.fdLimit - 2_000);
  }
  const ctx: RunContext = { config, results, warn };

  const profileDir = args.profile
    ? path.join(BENCH_DIR, 'results', 'profiles', new Date().toISOString().replace(/[:.]/g, '-'))
    : undefined;
  if (profileDir) await mkdir(profileDir, { recursive: true });

  /** Records when a measurement ran, to cut its part out of the CPU profiles. */
  const phase = async (name: string, work: () => Promise<void>) => {
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    await work();
    results.phases.push({ name, fromUs, toUs: Number(process.hrtime.bigint() / 1000n) });
  };

  if (selected.some((m) => m.stage === 'with-subjects')) {
    log(
      `${results.meta.mode} run; starting target, IPCola (server + agent), Squid ${squid}, proxy-chain`,
    );
    const { stop, ...subjects } = await startSubjects(results, profileDir);
    try {
      log(`all subjects answer; pinning ${JSON.stringify(results.meta.pinning)}`);
      const withSubjects: SubjectsContext = { ...ctx, ...subjects };
      let warmedUp = false;
      for (const measurement of selected) {
        if (measurement.stage !== 'with-subjects') continue;
        if (measurement.warmUp && !warmedUp) {
          await phase('warm-up', () => warmUp(withSubjects));
          warmedUp = true;
        }
        await phase(measurement.name, () => measurement.run(withSubjects));
      }
    } finally {
      await stop();
    }
  }

  if (profileDir) await summariseProfiles(profileDir, ctx);
  for (const measurement of selected) {
    if (measurement.stage === 'after-subjects') await measurement.run(ctx);
  }

  results.meta.loadAvgEnd = loadavg();
  results.meta.durationS = (Date.now() - startedAt) / 1000;
  const outFile = args.out ?? path.join(BENCH_DIR, 'results', 'latest.json');
  await mkdir(path.dirname(outFile), { recursive: true });
  results.targets = evaluateTargets(results);
  await writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(formatReport(results));
  process.stdout.write(`\nJSON: ${path.relative(process.cwd(), outFile) || outFile}\n`);
}

// ---------------------------------------------------------------------------------------
// Entry: refuse unknown measurement names before anything starts; then re-execute pinned
// to the load core, with as many open files as allowed.
let selected: Measurement[];
try {
  // --soak alone runs the soak only; with --only, those measurements and then the soak.
  selected = args.soak && !args.only ? [] : selectMeasurements(args.only);
} catch (error) {
  if (!(error instanceof UnknownMeasurementError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(2);
}
const soakSeconds = args.soak === undefined ? undefined : parseDuration(args.soak);
if (
  soakSeconds === null ||
  (soakSeconds !== undefined && (soakSeconds < 30 || soakSeconds > 6 * 3600))
) {
  process.stderr.write('--soak takes a duration from 30s to 6h, e.g. 90s, 3m or 1h\n');
  process.exit(2);
}
if (soakSeconds !== undefined) selected.push(SOAK);
if (process.env.IPCOLA_BENCH_CHILD !== '1') {
  const child = spawn(
    'sh',
    [
      '-c',
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec taskset -c "$0" "$@"',
      String(LOAD_CORE),
      process.execPath,
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, IPCOLA_BENCH_CHILD: '1' } },
  );
  // Ctrl-C reaches the child too (same process group); it cleans up and exits.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  process.on('SIGINT', () => {
    killAll();
    process.exit(130);
  });
  process.on('SIGTERM', () => {
    killAll();
    process.exit(143);
  });
  main(selected).catch((error) => {
    console.error(error);
    killAll();
    process.exit(1);
  });
}
