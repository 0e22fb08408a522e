/**
 * Idempotency-Key on the real server: a retried mutation gets the first answer (the same
 * key and secret, not a second key), the same Idempotency-Key with another request is
 * idempotency_conflict, a malformed one is refused, and kept answers are sealed at rest.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openPglite } from '../src/store/index.ts';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

describe('idempotency keys replay the first answer', () => {
  let dataDir: string;
  let server: ServerProcess;
  let api: (pathname: string, init?: RequestInit & { key?: string }) => Promise<Response>;
  const secrets: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-idempotency-'));
    server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    const base = `http://127.0.0.1:${server.ports.api}`;
    const signup = await fetch(`${base}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'idem@example.com', password: 'a long enough password' }),
    });
    const cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const { csrf_token: csrf } = (await signup.json()) as { csrf_token: string };
    api = (pathname, init = {}) =>
      fetch(`${base}${pathname}`, {
        ...init,
        headers: {
          'content-type': 'application/json',
          cookie,
          'x-csrf-token': csrf,
          ...(init.key === undefined ? {} : { 'idempotency-key': init.key }),
        },
      });
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  const keyCount = async () =>
    ((await (await api('/v1/keys')).json()) as { items: unknown[] }).items.length;

  test('a retried create answers with the same key and makes no second one', async () => {
    const first = await api('/v1/keys', {
      method: 'POST',
      body: '{"name":"once"}',
      key: 'create-1',
    });
    assert.equal(first.status, 201);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const created = (await first.json()) as { id: string; secret: string };
    secrets.push(created.secret);
    const count = await keyCount();

    const retry = await api('/v1/keys', {
      method: 'POST',
      body: '{"name":"once"}',
      key: 'create-1',
    });
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.match(retry.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await retry.json(), created);
    assert.equal(await keyCount(), count, 'no second key');

    const other = await api('/v1/keys', {
      method: 'POST',
      body: '{"name":"once"}',
      key: 'create-2',
    });
    assert.equal(other.status, 201);
    assert.notEqual(((await other.json()) as { id: string }).id, created.id);
  });

  test('the same key with another request is a conflict; a malformed key is refused', async () => {
    const conflict = await api('/v1/keys', {
      method: 'POST',
      body: '{"name":"twice"}',
      key: 'create-1',
    });
    assert.equal(conflict.status, 409);
    assert.equal(
      ((await conflict.json()) as { error: { code: string } }).error.code,
      'idempotency_conflict',
    );
    const malformed = await api('/v1/keys', { method: 'POST', body: '{}', key: 'has space' });
    assert.equal(malformed.status, 400);
  });

  test('a retried delete answers 204 again instead of 404', async () => {
    const made = (await (await api('/v1/keys', { method: 'POST', body: '{}' })).json()) as {
      id: string;
    };
    const first = await api(`/v1/keys/${made.id}`, { method: 'DELETE', key: 'delete-1' });
    assert.equal(first.status, 204);
    const retry = await api(`/v1/keys/${made.id}`, { method: 'DELETE', key: 'delete-1' });
    assert.equal(retry.status, 204);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    const without = await api(`/v1/keys/${made.id}`, { method: 'DELETE' });
    assert.equal(without.status, 404, 'without the key it is a new request');
  });

  test('kept answers are sealed at rest: no secret in the database', async () => {
    assert.equal(await server.stop(), 0);
    const db = await openPglite(dataDir);
    try {
      const rows = await db.query<{ key: string; answer: string }>(
        'SELECT key, answer FROM idempotency_keys ORDER BY key',
      );
      assert.deepEqual(
        rows.map((row) => row.key),
        ['create-1', 'create-2', 'delete-1'],
      );
      for (const row of rows) {
        assert.match(row.answer, /^v1\./);
        for (const secret of secrets) assert.ok(!row.answer.includes(secret));
      }
    } finally {
      await db.close();
    }
  });
});
