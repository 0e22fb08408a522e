import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';
import {
  InvalidRequestError,
  IPCola,
  IPColaError,
  NotFoundError,
  PagedList,
  UnauthorizedError,
} from '../src/index.ts';
import { type ApiServer, startApiServer } from './support/api-server.ts';
import { eventually, requestLogged } from './support/eventually.ts';

let server: ApiServer;
let ipc: IPCola;

before(async () => {
  server = await startApiServer({ demo: true });
  ipc = new IPCola({ apiKey: server.apiKey, apiUrl: server.apiUrl });
});
after(() => server?.close());

test('a list pages by itself: for await walks every page, pages() and page(cursor) give one page each', async () => {
  const made = [];
  for (let i = 0; i < 5; i++) made.push(await ipc.keys.create({ name: `page ${i}` }));
  const expected = [server.key.id, ...made.map((key) => key.id)];

  const list = ipc.keys.list({ limit: 2 });
  assert.ok(list instanceof PagedList);
  const seen: string[] = [];
  for await (const key of list) seen.push(key.id);
  assert.deepEqual(seen, expected);

  const pages = [];
  for await (const page of ipc.keys.list({ limit: 2 }).pages()) pages.push(page);
  assert.deepEqual(
    pages.map((page) => page.items.length),
    [2, 2, 2],
  );
  assert.equal(pages.at(-1)?.next_cursor, null);

  const first = await ipc.keys.list({ limit: 2 });
  assert.deepEqual(
    first.items.map((key) => key.id),
    expected.slice(0, 2),
  );
  assert.ok(first.next_cursor);
  const second = await ipc.keys.list({ limit: 2 }).page(first.next_cursor);
  assert.deepEqual(
    second.items.map((key) => key.id),
    expected.slice(2, 4),
  );
  assert.deepEqual(
    (await ipc.keys.list({ limit: 2 }).toArray(3)).map((key) => key.id),
    expected.slice(0, 3),
  );

  // Each page was a request of its own, limit and cursor in its query.
  const listed = server.server.logs.filter(
    (line) =>
      (line.req as { url?: string } | undefined)?.url?.startsWith('/v1/keys?limit=2') === true,
  );
  assert.ok(listed.some((line) => (line.req as { url: string }).url.includes('cursor=')));
});

test('a key is made, read, changed, rotated and revoked; a revoked key no longer opens the API', async () => {
  const made = await ipc.keys.create({ name: 'life', scopes: ['proxy', 'api'] });
  assert.equal(typeof made.secret, 'string');
  assert.deepEqual(made.scopes, ['proxy', 'api']);

  assert.equal((await ipc.keys.get(made.id)).name, 'life');
  const changed = await ipc.keys.update(made.id, { name: 'renamed', max_concurrency: 3 });
  assert.equal(changed.name, 'renamed');
  assert.equal(changed.max_concurrency, 3);

  const rotated = await ipc.keys.rotate(made.id);
  assert.equal(rotated.id, made.id);
  assert.notEqual(rotated.secret, made.secret);

  const own = new IPCola({ apiKey: `${made.id}.${rotated.secret}`, apiUrl: server.apiUrl });
  assert.equal((await own.me()).account.id, (await ipc.me()).account.id);

  assert.equal(await ipc.keys.revoke(made.id), undefined);
  await assert.rejects(ipc.keys.get(made.id), NotFoundError);
  await assert.rejects(own.me(), UnauthorizedError);
});

test('a lease pins a US exit, is renewed, listed and released', async () => {
  const lease = await ipc.leases.create({ country: 'us', ttl_seconds: 600 });
  assert.equal(lease.exit?.country, 'us');
  assert.equal(lease.active, true);
  assert.equal((await ipc.leases.get(lease.id)).id, lease.id);

  const renewed = await ipc.leases.renew(lease.id, { ttl_seconds: 900 });
  assert.ok(Date.parse(renewed.expires_at ?? '') >= Date.parse(lease.expires_at ?? '') + 290_000);

  const listed = await ipc.leases.list().toArray();
  assert.ok(listed.some((item) => item.id === lease.id));

  await ipc.leases.release(lease.id);

  // camelCase fields are sent as the API names them.
  const camel = await ipc.leases.create({ country: 'de', ttlSeconds: 120 });
  assert.equal(camel.ttl_seconds, 120);
  assert.equal(camel.exit?.country, 'de');
  await ipc.leases.release(camel.id);
  assert.ok(!(await ipc.leases.list().toArray()).some((item) => item.id === lease.id));
});

test('printing the client shows its key id and URLs, never the secret', () => {
  const printed = inspect({ client: ipc });
  assert.match(printed, new RegExp(`IPCola .*"keyId":"${server.key.id}"`));
  assert.ok(!printed.includes(server.key.secret));
});

test('the other namespaces answer with the API document types', async () => {
  const list = await ipc.proxyLists.create({ country: 'us', count: 3, format: 'url' });
  assert.equal(list.proxies.length, 3);
  assert.ok(list.proxies.every((line) => line.startsWith(`http://${server.key.id}-country-us-`)));

  const regions = await ipc.regions.list().toArray();
  assert.deepEqual(
    regions.map((region) => [region.country, region.exits]),
    [
      ['de', 1],
      ['us', 2],
    ],
  );

  const billing = await ipc.billing.get();
  assert.equal(billing.balance.currency, 'usd');
  const usage = await ipc.usage.list();
  assert.deepEqual(usage.totals, { bytes_up: 0, bytes_down: 0, requests: 0 });
  assert.match(await ipc.usage.exportCsv(), /^period_start,key_id,key_name,/);
  assert.deepEqual(await ipc.nodes.list().toArray(), []);
  assert.deepEqual(await ipc.webhooks.list().toArray(), []);
  assert.deepEqual(await ipc.operations.health(), { status: 'ok' });
  assert.equal((await ipc.operations.readiness()).status, 'ready');
  assert.match(await ipc.operations.openapiDocument(), /^openapi: 3\.1/);
  // Every operation, even those without a namespace, through the raw typed client.
  const { data } = await ipc.api.GET('/v1/me');
  assert.equal(data?.user, null);
});

test('an API refusal is its own error class with code, status and the request id the server logged', async () => {
  const missing = await ipc.keys.get('no-such-key').catch((error: unknown) => error);
  assert.ok(missing instanceof NotFoundError);
  assert.ok(missing instanceof IPColaError);
  assert.equal(missing.code, 'not_found');
  assert.equal(missing.status, 404);
  assert.equal(missing.name, 'NotFoundError');
  assert.ok(missing.requestId);
  const logged = await eventually(() => requestLogged(server.server.logs, missing.requestId ?? ''));
  assert.equal((logged.req as { url: string }).url, '/v1/keys/no-such-key');

  const invalid = await ipc.keys
    .create({ scopes: ['root' as 'api'] })
    .catch((error: unknown) => error);
  assert.ok(invalid instanceof InvalidRequestError);
  assert.equal(invalid.status, 400);
  assert.match(invalid.message, /scopes/);

  const stranger = new IPCola({ apiKey: `${server.key.id}.wrong-secret`, apiUrl: server.apiUrl });
  const refused = await stranger.me().catch((error: unknown) => error);
  assert.ok(refused instanceof UnauthorizedError);
  assert.equal(refused.code, 'unauthorized');
  assert.equal(refused.status, 401);
});
