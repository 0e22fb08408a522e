import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { MIGRATION_VERSIONS } from './support/engines.ts';
import { serverEnv, spawnServer, startServer } from './support/server-process.ts';

const run = promisify(execFile);

async function curl(url: string): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '5', '-w', '\n%{http_code}', url]);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

describe('the server process', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-process-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  test('starts with embedded defaults and answers curl on /healthz, /readyz and /openapi.yaml', async () => {
    const server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    try {
      const base = `http://127.0.0.1:${server.ports.api}`;
      assert.deepEqual(await curl(`${base}/healthz`), { status: 200, body: '{"status":"ok"}' });
      const ready = await curl(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(JSON.parse(ready.body).checks.database.engine, 'pglite');
      const document = await curl(`${base}/openapi.yaml`);
      assert.equal(document.status, 200);
      assert.match(document.body, /^openapi: 3\.1\.0/);
      const migrated = server.logs.find((line) => Array.isArray(line.applied));
      assert.deepEqual(migrated?.applied, MIGRATION_VERSIONS);
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0);
    }
  });

  test('SIGTERM with an idle keep-alive client open exits 0 promptly and releases DATA_DIR', async () => {
    const server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    const agent = new Agent({ keepAlive: true });
    try {
      await new Promise<void>((resolve, reject) => {
        get(`http://127.0.0.1:${server.ports.api}/healthz`, { agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        }).on('error', reject);
      });
      assert.equal(Object.keys(agent.freeSockets).length, 1, 'a keep-alive socket stays open');
      const signalled = Date.now();
      const code = await server.stop('SIGTERM');
      const took = Date.now() - signalled;
      assert.equal(code, 0);
      assert.ok(took < 5_000, `shutdown took ${took} ms`);
      assert.ok(server.logs.some((line) => line.msg === 'stopped'));
      assert.ok(!(await readdir(dataDir)).includes('ipcola.pid'));
    } finally {
      agent.destroy();
    }
  });

  test('a restart on the same DATA_DIR keeps the data and applies no migration again', async () => {
    const server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    try {
      const migrated = server.logs.find((line) => Array.isArray(line.applied));
      assert.deepEqual(migrated?.applied, []);
    } finally {
      assert.equal(await server.stop('SIGINT'), 0, 'Ctrl-C is as clean as SIGTERM');
    }
  });

  test('a second server on a DATA_DIR in use is refused, and the first keeps serving', async () => {
    const first = await startServer(serverEnv({ DATA_DIR: dataDir }));
    try {
      const second = spawnServer(serverEnv({ DATA_DIR: dataDir }));
      assert.notEqual(await second.exited, 0);
      assert.match(
        second.stderr(),
        new RegExp(`DATA_DIR: .* is in use by another IPCola process \\(pid ${first.child.pid}\\)`),
      );
      assert.equal((await curl(`http://127.0.0.1:${first.ports.api}/healthz`)).status, 200);
    } finally {
      assert.equal(await first.stop(), 0);
    }
  });

  test('a lock left by a process that died does not block the next start', async () => {
    const crashed = await startServer(serverEnv({ DATA_DIR: dataDir }));
    assert.equal(await crashed.stop('SIGKILL'), null);
    assert.ok((await readdir(dataDir)).includes('ipcola.pid'), 'kill -9 left its lock behind');
    const next = await startServer(serverEnv({ DATA_DIR: dataDir }));
    assert.equal(await next.stop(), 0);
  });
});
