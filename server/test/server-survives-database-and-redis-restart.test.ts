import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { eventually, needs } from './support/engines.ts';
import { privatePostgres, privateRedis } from './support/private-services.ts';
import { serverEnv, startServer } from './support/server-process.ts';

interface Readiness {
  status: string;
  checks: Record<'database' | 'hot_state', { status: string; engine: string }>;
}

test('PostgreSQL and Redis restarts turn /readyz red, then green, and never crash the server', {
  // On private copies of the services the run provides (CI sets both).
  skip: needs('DATABASE_URL', 'REDIS_URL'),
}, async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-restart-'));
  const postgres = await privatePostgres();
  const redis = await privateRedis();
  const server = await startServer(
    serverEnv({ DATA_DIR: dataDir, DATABASE_URL: postgres.url, REDIS_URL: redis.url }),
  );
  const readiness = async (): Promise<[number, Readiness]> => {
    const res = await fetch(`http://127.0.0.1:${server.ports.api}/readyz`);
    return [res.status, (await res.json()) as Readiness];
  };
  try {
    const [status, ready] = await readiness();
    assert.equal(status, 200);
    assert.equal(ready.checks.database.engine, 'postgres');
    assert.equal(ready.checks.hot_state.engine, 'redis');

    await postgres.stop();
    await eventually(async () => (await readiness())[0] === 503, 10_000, 'readyz to go red');
    const [, dbDown] = await readiness();
    assert.equal(dbDown.checks.database.status, 'down');
    assert.equal(dbDown.checks.hot_state.status, 'up');
    await postgres.start();
    await eventually(async () => (await readiness())[0] === 200, 15_000, 'readyz to go green');

    await redis.stop();
    await eventually(async () => (await readiness())[0] === 503, 10_000, 'readyz to go red');
    const [, redisDown] = await readiness();
    assert.equal(redisDown.checks.hot_state.status, 'down');
    assert.equal(redisDown.checks.database.status, 'up');
    await redis.start();
    await eventually(async () => (await readiness())[0] === 200, 15_000, 'readyz to go green');

    assert.equal(server.child.exitCode, null, 'the server is still running');
    assert.ok(
      server.logs.some((line) => line.msg === 'postgres idle connection lost'),
      'the lost idle connection was logged, not thrown',
    );
  } finally {
    assert.equal(await server.stop(), 0);
    await redis.dispose();
    await postgres.dispose();
    await rm(dataDir, { recursive: true, force: true });
  }
});
