import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('openapi/openapi.d.ts is what openapi-typescript makes of openapi/openapi.yaml now', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-types-'));
  try {
    const fresh = path.join(dir, 'openapi.d.ts');
    await run(
      process.execPath,
      [
        path.join(ROOT, 'node_modules/openapi-typescript/bin/cli.js'),
        'openapi/openapi.yaml',
        '-o',
        fresh,
      ],
      { cwd: ROOT },
    );
    const committed = await readFile(path.join(ROOT, 'openapi/openapi.d.ts'), 'utf8');
    assert.equal(
      committed,
      await readFile(fresh, 'utf8'),
      'the generated types are stale: run `npm run gen:types` and commit the result',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
