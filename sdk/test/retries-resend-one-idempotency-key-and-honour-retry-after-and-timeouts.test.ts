import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  BillingDisabledError,
  InternalError,
  IPCola,
  NoExitAvailableError,
  NotReadyError,
  RateLimitedError,
} from '../src/index.ts';
import { type ApiServer, startApiServer } from './support/api-server.ts';
import { eventually } from './support/eventually.ts';
import { type Front, startFront } from './support/front.ts';

let server: ApiServer;
let front: Front;
/** Through the front; a short back-off so the tests do not wait for jitter. */
let ipc: IPCola;

before(async () => {
  // One sign-up an hour: the harness's; the rate-limit test's is one too many.
  server = await startApiServer({ env: { SIGNUP_LIMIT_PER_HOUR: '1' } });
  front = await startFront(server.apiUrl);
  ipc = new IPCola({ apiKey: server.apiKey, apiUrl: front.url });
});
after(async () => {
  await front?.close();
  await server?.close();
});
beforeEach(() => {
  front.seen.length = 0;
  front.plan();
});

const serverSaw = (method: string, url: string) =>
  server.server.logs.filter((line) => {
    const req = line.req as { method?: string; url?: string } | undefined;
    return req?.method === method && req.url === url;
  });

test('a mutation whose answer was lost is retried after Retry-After with the same Idempotency-Key, and made once', async () => {
  front.plan({ kind: 'lose-answer', status: 503, headers: { 'retry-after': '1' } });

  const key = await ipc.keys.create({ name: 'made once' });

  assert.equal(front.seen.length, 2);
  const [first, second] = front.seen;
  assert.ok(first?.idempotencyKey && second?.idempotencyKey);
  assert.equal(second.idempotencyKey, first.idempotencyKey);
  assert.ok(second.at - first.at >= 950, `waited ${second.at - first.at} ms for Retry-After: 1`);
  // The server did the work on the first attempt and answered the retry from its record.
  assert.equal(first.forwarded?.status, 201);
  assert.equal((JSON.parse(first.forwarded?.body ?? '{}') as { id: string }).id, key.id);
  // Both attempts reached the server under one key; it answered the second from its record.
  const logged = await eventually(() => {
    const lines = serverSaw('POST', '/v1/keys').filter(
      (line) =>
        (line.req as { headers: Record<string, string> }).headers['idempotency-key'] ===
        first.idempotencyKey,
    );
    assert.equal(lines.length, 2);
    return lines as Array<{ res: { statusCode: number; headers: Record<string, string> } }>;
  });
  assert.deepEqual(
    logged.map((line) => [line.res.statusCode, line.res.headers['idempotent-replayed']]),
    [
      [201, undefined],
      [201, 'true'],
    ],
  );
  const named = (await ipc.keys.list().toArray()).filter((k) => k.name === 'made once');
  assert.equal(named.length, 1);
});

test('every mutation carries an Idempotency-Key, a new one per call unless one is given; reads carry none', async () => {
  const made = await ipc.keys.create({ name: 'keyed' });
  await ipc.keys.update(made.id, { name: 'keyed again' });
  await ipc.keys.rotate(made.id);
  await ipc.keys.revoke(made.id, { idempotencyKey: 'my-own-key-1' });
  await ipc.keys.get(server.key.id);
  await ipc.api.POST('/v1/proxy-lists', { body: { count: 1, sticky: true, format: 'url' } });

  const keys = front.seen.map((seen) => [seen.method, seen.idempotencyKey]);
  assert.equal(keys.length, 6);
  for (const [method, key] of keys.filter(([method]) => method !== 'GET')) {
    assert.match(key ?? '', /^[\x21-\x7e]{1,255}$/, `${method} has a key`);
  }
  assert.equal(new Set(keys.map(([, key]) => key)).size, 6);
  assert.equal(keys[3]?.[1], 'my-own-key-1');
  assert.deepEqual(keys[4], ['GET', undefined]);
});

test('a read survives a dropped connection and a 500, with back-off between attempts', async () => {
  front.plan(
    { kind: 'drop' },
    { kind: 'answer', status: 500, body: { error: { code: 'internal_error', message: 'boom' } } },
  );
  const me = await ipc.me();
  assert.ok(me.account.id);
  assert.equal(front.seen.length, 3);
});

test('a mutation told its key is still in use (409 idempotency_conflict) is retried with that key', async () => {
  front.plan({
    kind: 'answer',
    status: 409,
    body: { error: { code: 'idempotency_conflict', message: 'the first request still runs' } },
  });
  const lease = await ipc.leases.create({ ttlSeconds: 60 }).catch((e: unknown) => e);
  // No exit is online on this server: the retries reached it and got its real answer, a
  // 503 no_exit_available (retryable too), until maxRetries (2) ran out.
  assert.ok(lease instanceof NoExitAvailableError);
  assert.deepEqual(
    front.seen.map((seen) => seen.forwarded?.status),
    [undefined, 503, 503],
  );
  assert.equal(new Set(front.seen.map((seen) => seen.idempotencyKey)).size, 1);
});

test('retries stop at maxRetries (per request too) and the last refusal is thrown, typed', async () => {
  const busy = {
    kind: 'answer',
    status: 503,
    headers: { 'retry-after': '0', 'x-request-id': 'front-503' },
    body: { error: { code: 'not_ready', message: 'warming up' } },
  } as const;
  front.plan(busy, busy, busy, busy);
  const error = await ipc.me({ maxRetries: 1 }).catch((e: unknown) => e);
  assert.ok(error instanceof NotReadyError);
  assert.equal(error.status, 503);
  assert.equal(error.retryAfter, 0);
  assert.equal(error.requestId, 'front-503');
  assert.equal(front.seen.length, 2);

  front.seen.length = 0;
  front.plan(busy, busy, busy, busy);
  await assert.rejects(ipc.me(), NotReadyError);
  assert.equal(front.seen.length, 3, 'the default maxRetries is 2');

  front.seen.length = 0;
  front.plan({
    kind: 'answer',
    status: 500,
    body: { error: { code: 'internal_error', message: 'x' } },
  });
  await assert.rejects(ipc.me({ maxRetries: 0 }), InternalError);
  assert.equal(front.seen.length, 1);
});

test('a Retry-After longer than a minute is not waited for: the error carries it', async () => {
  front.plan({
    kind: 'answer',
    status: 429,
    headers: { 'retry-after': '120' },
    body: { error: { code: 'rate_limited', message: 'slow down' } },
  });
  const error = await ipc.keys
    .list()
    .page()
    .catch((e: unknown) => e);
  assert.ok(error instanceof RateLimitedError);
  assert.equal(error.retryAfter, 120);
  assert.equal(front.seen.length, 1);
});

test("the server's own 429 (sign-up limit) and 501 (no Stripe) are thrown typed, the 501 without retrying", async () => {
  const direct = new IPCola({ apiKey: server.apiKey, apiUrl: server.apiUrl });
  const limited = await direct.auth
    .signup({ email: 'over-the-limit@example.com', password: 'a long enough password' })
    .catch((e: unknown) => e);
  assert.ok(limited instanceof RateLimitedError, String(limited));
  assert.equal(limited.status, 429);
  assert.ok((limited.retryAfter ?? 0) > 60);
  await eventually(() =>
    assert.deepEqual(
      serverSaw('POST', '/v1/auth/signup').map(
        (line) => (line.res as { statusCode: number }).statusCode,
      ),
      [201, 429],
    ),
  );

  const disabled = await direct.billing
    .createCheckout({ pack: 'starter' })
    .catch((e: unknown) => e);
  assert.ok(disabled instanceof BillingDisabledError);
  assert.equal(disabled.status, 501);
  await eventually(() => assert.equal(serverSaw('POST', '/v1/billing/checkout').length, 1));
});

test('an attempt without an answer times out and is retried; the last timeout is an APITimeoutError', async () => {
  front.plan({ kind: 'hang' }, { kind: 'hang' });
  const started = Date.now();
  const error = await ipc.me({ timeout: 300, maxRetries: 1 }).catch((e: unknown) => e);
  assert.ok(error instanceof APITimeoutError);
  assert.ok(error instanceof APIConnectionError);
  assert.equal(error.code, 'timeout');
  assert.equal(front.seen.length, 2);
  assert.ok(Date.now() - started < 5_000);
});

test("the caller's AbortSignal ends the call at once, without a retry", async () => {
  front.plan({ kind: 'hang' });
  const controller = new AbortController();
  const call = ipc.me({ signal: controller.signal }).catch((e: unknown) => e);
  await eventually(() => assert.equal(front.seen.length, 1));
  controller.abort();
  const error = await call;
  assert.ok(error instanceof APIUserAbortError);
  assert.equal(error.code, 'aborted');
  assert.equal(front.seen.length, 1);
});

test('an API nobody listens on is an APIConnectionError after the retries', async () => {
  await front.close();
  const gone = new IPCola({ apiKey: server.apiKey, apiUrl: front.url, maxRetries: 1 });
  const error = await gone.me().catch((e: unknown) => e);
  assert.ok(error instanceof APIConnectionError);
  assert.equal(error.code, 'connection_error');
  assert.match(error.message, /ECONNREFUSED/);
  front = await startFront(server.apiUrl);
});
