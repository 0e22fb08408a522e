import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ApiServer, startApiServer } from './support/api-server.ts';
import { runCli } from './support/cli.ts';

const exec = promisify(execFile);
const SDK = fileURLToPath(new URL('../', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const TYPES = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@types/node/package.json')),
  '..',
);

let server: ApiServer;
let project: string;
let packed: { filename: string; files: Array<{ path: string }> };

/** npm as a user runs it: none of the workspace's npm_* settings leak into the temp project. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(name)) env[name] = value;
  }
  return env;
}

before(async () => {
  const [started, dir] = await Promise.all([
    startApiServer(),
    mkdtemp(path.join(tmpdir(), 'ipcola-sdk-install-')),
  ]);
  server = started;
  project = dir;
  // A fresh build, then the tarball of it: packing without scripts keeps the build's own
  // output (which CI makes different) out of npm pack's JSON.
  await exec('npm', ['run', 'build'], { cwd: SDK, env: npmEnv(), maxBuffer: 16 * 1024 * 1024 });
  const { stdout } = await exec(
    'npm',
    ['pack', '--json', '--ignore-scripts', '--pack-destination', project],
    { cwd: SDK, env: npmEnv(), maxBuffer: 16 * 1024 * 1024 },
  );
  const [info] = JSON.parse(stdout) as (typeof packed)[];
  assert.ok(info);
  packed = info;
  await writeFile(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'uses-ipcola', version: '1.0.0', private: true }),
  );
  await exec('npm', ['install', '--no-audit', '--no-fund', path.join(project, packed.filename)], {
    cwd: project,
    env: npmEnv(),
  });
});
after(async () => {
  await server?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

const EXAMPLE = (load: string) => `${load}
const ipc = new IPCola();
const ids = [];
for await (const key of ipc.keys.list({ limit: 1 })) ids.push(key.id);
let notFound;
try {
  await ipc.keys.get('no-such-key');
} catch (error) {
  notFound = error instanceof NotFoundError ? [error.code, error.status, Boolean(error.requestId)] : String(error);
}
console.log(JSON.stringify({ ids, account: (await ipc.me()).account.id, notFound }));
`;

async function runExample(file: string) {
  const { stdout } = await exec(process.execPath, [file], {
    cwd: project,
    env: { PATH: process.env.PATH, IPCOLA_KEY: server.apiKey, IPCOLA_API_URL: server.apiUrl },
  });
  return JSON.parse(stdout) as { ids: string[]; account: string; notFound: unknown };
}

test('the tarball holds the ESM and CommonJS builds, declarations and source maps, and no source', () => {
  const files = packed.files.map((file) => file.path).sort();
  for (const file of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts']) {
    assert.ok(files.includes(file), file);
    if (!file.includes('.d.')) assert.ok(files.includes(`${file}.map`), `${file}.map`);
  }
  assert.ok(files.includes('dist/cli.js'));
  assert.ok(files.includes('README.md'));
  assert.deepEqual(
    files.filter((file) => !file.startsWith('dist/')),
    ['README.md', 'package.json'].filter((file) => files.includes(file)),
  );
});

test('installed, it needs no private workspace package: only the public libraries it uses come along', async () => {
  assert.deepEqual(await readdir(path.join(project, 'node_modules', '@ipcola')), ['sdk']);
  const manifest = JSON.parse(
    await readFile(path.join(project, 'node_modules', '@ipcola', 'sdk', 'package.json'), 'utf8'),
  );
  assert.deepEqual(Object.keys(manifest.dependencies).sort(), [
    'http-proxy-agent',
    'https-proxy-agent',
    'openapi-fetch',
    'undici',
  ]);
  // The declarations (index, the fetch-only `api` entry and the chunks they share) inline
  // the API document's types: nothing names a private package.
  const dist = path.join(project, 'node_modules', '@ipcola', 'sdk', 'dist');
  const names = (await readdir(dist)).filter((name) => /\.d\.c?ts$/.test(name));
  assert.ok(names.includes('index.d.ts') && names.includes('api.d.ts'), names.join(', '));
  const declarations = (
    await Promise.all(names.map((name) => readFile(path.join(dist, name), 'utf8')))
  ).join('\n');
  assert.doesNotMatch(declarations, /@ipcola\/(openapi|shared|server|agent|portal)/);
  assert.match(declarations, /quota_exhausted/);
});

test('an ES module and a CommonJS script both reach the real API through the installed package', async () => {
  await writeFile(
    path.join(project, 'esm.mjs'),
    EXAMPLE("import { IPCola, NotFoundError } from '@ipcola/sdk';"),
  );
  await writeFile(
    path.join(project, 'cjs.cjs'),
    `const { IPCola, NotFoundError } = require('@ipcola/sdk');\n(async () => {${EXAMPLE('')}})();\n`,
  );
  const account = (await runExample('esm.mjs')).account;
  for (const file of ['esm.mjs', 'cjs.cjs']) {
    const result = await runExample(file);
    assert.deepEqual(result.ids, [server.key.id]);
    assert.equal(result.account, account);
    assert.deepEqual(result.notFound, ['not_found', 404, true]);
  }
});

test('TypeScript users get the API types from the installed declarations, for import and require', async () => {
  const typed = (load: string) => `${load}
export async function check(): Promise<string> {
  const ipc = new IPCola({ apiKey: 'k.s' });
  const lease = await ipc.leases.create({ country: 'us', ttl_seconds: 60 });
  const username: string = lease.proxy_username;
  try {
    await ipc.keys.get('x');
  } catch (error) {
    if (error instanceof NotFoundError) return error.code;
  }
  return username;
}
`;
  await writeFile(
    path.join(project, 'typed.mts'),
    typed("import { IPCola, NotFoundError } from '@ipcola/sdk';"),
  );
  await writeFile(
    path.join(project, 'typed.cts'),
    typed("import sdk = require('@ipcola/sdk');\nconst { IPCola, NotFoundError } = sdk;"),
  );
  await writeFile(
    path.join(project, 'wrong.mts'),
    "import { IPCola } from '@ipcola/sdk';\nawait new IPCola().leases.create({ ttl: 60 });\n",
  );
  const tsc = (file: string) =>
    exec(
      process.execPath,
      [
        TSC,
        '--noEmit',
        '--strict',
        '--module',
        'nodenext',
        '--target',
        'es2023',
        '--typeRoots',
        TYPES,
        '--types',
        'node',
        file,
      ],
      { cwd: project },
    );
  for (const file of ['typed.mts', 'typed.cts']) {
    await tsc(file).catch((error: { stdout: string }) => assert.fail(`${file}: ${error.stdout}`));
  }
  await assert.rejects(tsc('wrong.mts'), (error: { stdout: string }) => {
    assert.match(error.stdout, /error TS2353: .*'ttl' does not exist/);
    return true;
  });
});

test('the installed ipcola CLI logs in (config file 0600) and lists keys as JSON', async () => {
  const bin = path.join(project, 'node_modules', '.bin', 'ipcola');
  const env = {
    PATH: process.env.PATH,
    HOME: project,
    XDG_CONFIG_HOME: path.join(project, 'config'),
  };
  const version = await runCli([bin], ['--version'], env);
  const manifest = JSON.parse(await readFile(path.join(SDK, 'package.json'), 'utf8'));
  assert.equal(version.stdout, `${manifest.version}\n`);

  const login = await runCli(
    [bin],
    ['login', '--api-url', server.apiUrl],
    env,
    `${server.apiKey}\n`,
  );
  assert.equal(login.status, 0, login.stderr);
  const file = path.join(project, 'config', 'ipcola', 'config.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);

  const keys = await runCli([bin], ['keys', 'list', '--json'], env);
  assert.equal(keys.status, 0, keys.stderr);
  assert.deepEqual(
    JSON.parse(keys.stdout).map((key: { id: string }) => key.id),
    [server.key.id],
  );
});
