/**
 * 7. Exit selection with 1,000,000 exits (exit-selection.ts in its own process), alone on
 * the proxy core once every subject is stopped.
 */
import path from 'node:path';
import type { Measurement, RunContext } from '../lib/context.ts';
import { log } from '../lib/context.ts';
import { BENCH_DIR, PROXY_CORE, spawnPinned } from '../lib/processes.ts';

export const name = 'selection';

export async function run({ config, results, warn }: RunContext): Promise<void> {
  log('exit selection: building 1,000,000 exits');
  let line = '';
  const child = spawnPinned(
    'exit-selection',
    PROXY_CORE,
    process.execPath,
    [
      '--max-old-space-size=4096',
      '--import',
      'tsx',
      path.join(BENCH_DIR, 'exit-selection.ts'),
      '--batches',
      String(config.selectionBatches),
    ],
    {
      onLine: (l) => {
        line = l;
      },
    },
  );
  const code = await new Promise<number | null>((resolve) => child.child.once('exit', resolve));
  if (code !== 0) warn(`exit selection failed (${code}): ${child.stderr().slice(-500)}`);
  else results.selection = JSON.parse(line);
}

export const measurement: Measurement = { name, stage: 'after-subjects', run };
