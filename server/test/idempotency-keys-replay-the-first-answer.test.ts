/**
 * Idempotency-Key on the real server: a retried mutation gets the first answer (the same
 * key and secret, not a second key), the same Idempotency-Key with another request is
 * idempotency_conflict, a malformed one is refused, a retried signup signs in again
 * instead of failing with email_taken, and kept answers are sealed at rest.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openPglite } from '../src/store/index.ts';
import {
  type ServerProcess,
  serverEnv,
  signedInApi,
  startServer,
} from './support/server-process.ts';

describe('idempotency keys replay the first answer', () => {
  let dataDir: string;
  let server: ServerProcess;
  let api: (pathname: string, init?: RequestInit & { key?: string }) => Promise<Response>;
  let base: string;
  const secrets: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-idempotency-'));
    server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    base = `http://127.0.0.1:${server.ports.api}`;
    const signedIn = await signedInApi(server.ports.api, 'idem@example.com');
    api = (pathname, { key, ...init } = {}) =>
      signedIn(pathname, {
        ...init,
        headers: key === undefined ? {} : { 'idempotency-key': key },
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

  test('a retried signup signs in again: one account, one trial credit, a new session', async () => {
    const password = 'another long password';
    const signup = (body: object, key?: string) =>
      fetch(`${base}/v1/auth/signup`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(key === undefined ? {} : { 'idempotency-key': key }),
        },
        body: JSON.stringify(body),
      });
    interface Started {
      account: { id: string; balance: { amount_micro: number } };
      csrf_token: string;
      error?: { code: string };
    }
    const first = await signup({ email: 'retry@example.com', password }, 'signup-1');
    assert.equal(first.status, 201);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const made = (await first.json()) as Started;

    // The answer was lost on the way: the client sends the same request again.
    const retry = await signup({ email: 'Retry@example.com', password }, 'signup-1');
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    const again = (await retry.json()) as Started;
    assert.equal(again.account.id, made.account.id, 'the same account');
    assert.deepEqual(again.account.balance, made.account.balance, 'one trial credit');
    assert.notEqual(again.csrf_token, made.csrf_token, 'a session of its own');
    const cookie = (retry.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const me = await fetch(`${base}/v1/me`, { headers: { cookie } });
    assert.equal(me.status, 200, 'the retry is signed in');
    assert.equal(((await me.json()) as Started).account.id, made.account.id);

    for (const [body, key] of [
      [{ email: 'retry@example.com', password: 'not the password at all' }, 'signup-1'],
      [{ email: 'retry@example.com', password }, undefined],
      [{ email: 'retry@example.com', password }, 'signup-2'],
    ] as const) {
      const refused = await signup(body, key);
      assert.equal(refused.status, 409, `${key} ${body.password}`);
      assert.equal(((await refused.json()) as Started).error?.code, 'email_taken');
    }
    const malformed = await signup({ email: 'third@example.com', password }, 'has space');
    assert.equal(malformed.status, 400);
  });

  test('log-in and log-out take an Idempotency-Key and check its form', async () => {
    const login = (key: string) =>
      fetch(`${base}/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ email: 'retry@example.com', password: 'another long password' }),
      });
    assert.equal((await login('has space')).status, 400);
    const first = await login('login-1');
    const twice = [first, await login('login-1')];
    assert.deepEqual(
      twice.map((answer) => answer.status),
      [200, 200],
    );
    const sessions = twice.map((answer) => (answer.headers.get('set-cookie') ?? '').split(';')[0]);
    assert.notEqual(sessions[0], sessions[1], 'each log-in is a session of its own');
    const { csrf_token: csrf } = (await first.json()) as { csrf_token: string };
    const logout = (key: string) =>
      fetch(`${base}/v1/auth/logout`, {
        method: 'POST',
        headers: { cookie: sessions[0] ?? '', 'x-csrf-token': csrf, 'idempotency-key': key },
      });
    assert.equal((await logout('bad key')).status, 400);
    assert.equal((await logout('logout-1')).status, 204);
  });

  test('kept answers are sealed at rest: no secret in the database', async () => {
    assert.equal(await server.stop(), 0);
    const db = await openPglite(dataDir);
    try {
      const rows = await db.query<{ key: string; answer: string }>(
        'SELECT key, answer FROM idempotency_keys WHERE answer IS NOT NULL ORDER BY key',
      );
      assert.deepEqual(
        rows.map((row) => row.key),
        ['create-1', 'create-2', 'delete-1'],
      );
      // A signup is remembered by its email's hash alone: nothing of the password is kept.
      const signups = await db.query<{ key: string; request_hash: string; answer: null }>(
        'SELECT key, request_hash, answer FROM idempotency_keys WHERE answer IS NULL',
      );
      assert.deepEqual(
        signups.map((row) => [row.key, row.answer]),
        [['signup-1', null]],
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
