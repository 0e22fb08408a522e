import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { openPglite } from '../../src/store/index.ts';
import { PGLITE_TEMPLATE } from '../../src/store/pglite-template.ts';

// initdb in WebAssembly takes 10-15 s here; the fallback case pays it once.
const TIMEOUT = { timeout: 120_000 };

describe('a new data directory starts from the template npm install wrote', () => {
  const dirs: string[] = [];
  const fresh = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-template-'));
    dirs.push(dir);
    return dir;
  };
  after(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  test('the postinstall step left the template for this PGlite version', () => {
    assert.ok(PGLITE_TEMPLATE, 'PGlite is installed under node_modules here');
    assert.ok(existsSync(PGLITE_TEMPLATE), `${PGLITE_TEMPLATE} is missing: did postinstall run?`);
  });

  test(
    'a cluster loaded from it serves queries and keeps data across a reopen',
    TIMEOUT,
    async () => {
      const dir = await fresh();
      const db = await openPglite(dir);
      await db.exec('CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);');
      await db.close();
      assert.ok(existsSync(path.join(dir, 'pglite', 'PG_VERSION')));
      const again = await openPglite(dir);
      assert.deepEqual(await again.query('SELECT n FROM kept'), [{ n: 42 }]);
      await again.close();
    },
  );

  test(
    'a damaged template falls back to initdb instead of stopping the server',
    TIMEOUT,
    async () => {
      const dir = await fresh();
      const damaged = path.join(dir, 'damaged.tar');
      await writeFile(damaged, Buffer.alloc(64 * 1024, 0x5a));
      const db = await openPglite(path.join(dir, 'data'), damaged);
      assert.deepEqual(await db.query('SELECT 1 + 1 AS two'), [{ two: 2 }]);
      await db.close();
    },
  );

  test(
    'an existing cluster is opened as it is, never overwritten by the template',
    TIMEOUT,
    async () => {
      const dir = await fresh();
      const first = await openPglite(dir);
      await first.exec('CREATE TABLE mine (n int)');
      await first.close();
      const damaged = path.join(dir, 'damaged.tar');
      await writeFile(damaged, 'not a tar');
      const second = await openPglite(dir, damaged);
      assert.deepEqual(await second.query('SELECT count(*)::int AS n FROM mine'), [{ n: 0 }]);
      await second.close();
    },
  );
});
