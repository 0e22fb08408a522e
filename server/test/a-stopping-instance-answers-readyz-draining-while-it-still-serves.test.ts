/**
 * SHUTDOWN_DELAY_MS: told to stop, an instance answers /readyz 503 `draining` and still
 * serves (its API, its proxy port) for that long, then closes its ports and exits 0. A
 * load balancer's health checks take it out meanwhile, so no connection it sends meets a
 * port that is closing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

const DELAY_MS = 3_000;

let server: ServerProcess & { ports: Record<'api' | 'proxy', number> };
let dataDir: string;

before(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-draining-'));
  server = (await startServer(
    serverEnv({ DATA_DIR: dataDir, SHUTDOWN_DELAY_MS: String(DELAY_MS) }),
  )) as typeof server;
});

after(async () => {
  await server?.stop('SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
});

const readyz = async () => {
  const answer = await fetch(`http://127.0.0.1:${server.ports.api}/readyz`);
  return { status: answer.status, body: (await answer.json()) as { status: string } };
};

/** Whether the proxy port takes a TCP connection now. */
const proxyAccepts = () =>
  new Promise<boolean>((resolve) => {
    const socket = connect(server.ports.proxy, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

test('a stopping instance answers /readyz 503 draining while it still serves, then exits 0', async () => {
  assert.deepEqual((await readyz()).status, 200);
  const signalled = performance.now();
  server.child.kill('SIGTERM');
  await eventually(async () => (await readyz()).status === 503, 2_000, '/readyz to answer 503');
  assert.equal((await readyz()).body.status, 'draining');
  assert.ok(await proxyAccepts(), 'the proxy port still takes connections');
  const code = await server.exited;
  const tookMs = performance.now() - signalled;
  assert.equal(code, 0);
  assert.ok(tookMs >= DELAY_MS, `exited after ${Math.round(tookMs)} ms`);
  assert.equal(await proxyAccepts(), false, 'its ports are closed once it exited');
});
