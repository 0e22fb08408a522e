import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const SDK = fileURLToPath(new URL('../', import.meta.url));

/** tsc on one file with the workspace's settings; answers its `file(line,col): error TSxxxx` lines. */
async function compile(file: string): Promise<{ code: number; errors: string[] }> {
  const args = [
    TSC,
    '--noEmit',
    '--strict',
    '--noUncheckedIndexedAccess',
    '--target',
    'es2023',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--types',
    'node',
    '--allowImportingTsExtensions',
    '--skipLibCheck',
    '--pretty',
    'false',
    file,
  ];
  try {
    await run(process.execPath, args, { cwd: SDK });
    return { code: 0, errors: [] };
  } catch (error) {
    const { code, stdout } = error as { code: number; stdout: string };
    return { code, errors: stdout.split('\n').filter((line) => /error TS\d+/.test(line)) };
  }
}

test('the examples a user writes compile against the generated API types', async () => {
  const { code, errors } = await compile('test/types/accepted.ts');
  assert.deepEqual(errors, []);
  assert.equal(code, 0);
});

test('each mistake in the refused examples fails to compile with the error marked on its line, and nothing else does', async () => {
  const source = await readFile(new URL('types/refused.ts', import.meta.url), 'utf8');
  const expected = source.split('\n').flatMap((line, index) => {
    const mark = /\/\/ (TS\d+)$/.exec(line);
    return mark ? [`${index + 1} ${mark[1]}`] : [];
  });
  assert.ok(expected.length >= 10);

  const { code, errors } = await compile('test/types/refused.ts');
  assert.notEqual(code, 0);
  const actual = errors.map((line) => {
    const match = /refused\.ts\((\d+),\d+\): error (TS\d+)/.exec(line);
    assert.ok(match, line);
    return `${match[1]} ${match[2]}`;
  });
  assert.deepEqual(actual, expected);
});
