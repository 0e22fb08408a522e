/**
 * Every account starts with the trial credit, so sign-ups are limited per client address
 * (SIGNUP_LIMIT_PER_HOUR): past it, 429 rate_limited with the real seconds left in
 * Retry-After. What a client writes in X-Forwarded-For does not change its address
 * unless its peer is a proxy listed in TRUST_PROXY.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';
import { signup } from './support/signup-from.ts';

const LIMIT = 3;

describe('sign-ups are limited per client address', () => {
  let server: ServerProcess;
  let dataDir: string;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-signups-'));
    server = await startServer(
      serverEnv({ DATA_DIR: dataDir, SIGNUP_LIMIT_PER_HOUR: String(LIMIT) }),
    );
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test(`${LIMIT} sign-ups an hour from one address, then 429 rate_limited with Retry-After`, async () => {
    for (let i = 0; i < LIMIT; i += 1) {
      assert.equal((await signup(server.ports.api, { from: '127.0.0.21' })).status, 201);
    }
    const refused = await signup(server.ports.api, { from: '127.0.0.21' });
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error?.code, 'rate_limited');
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter > 3_500 && retryAfter <= 3_600,
      `Retry-After: ${refused.headers['retry-after']} (the rest of the hour, in seconds)`,
    );
    assert.match(refused.body.error?.message ?? '', new RegExp(`${retryAfter} s`));
  });

  test('another address is not affected', async () => {
    assert.equal((await signup(server.ports.api, { from: '127.0.0.22' })).status, 201);
  });

  test('a spoofed X-Forwarded-For from an untrusted address does not dodge the limit', async () => {
    for (const forwarded of ['198.51.100.7', '127.0.0.99', '198.51.100.8, 203.0.113.1']) {
      const refused = await signup(server.ports.api, {
        from: '127.0.0.21',
        headers: { 'x-forwarded-for': forwarded, forwarded: `for=${forwarded.split(',')[0]}` },
      });
      assert.equal(refused.status, 429, forwarded);
      assert.equal(refused.body.error?.code, 'rate_limited');
    }
  });
});
