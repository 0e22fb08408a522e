/**
 * The allocation API end to end: a lease pins one exit IP matching its targeting before
 * any traffic; requests with its username leave from that IP; it can be read, listed,
 * renewed and released; each use pushes its expiry back, and unused it lapses at its TTL;
 * bad requests are refused with a code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { components } from '@ipcola/openapi';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';

type Lease = components['schemas']['Lease'];

describe('leases pin one exit until released', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
      { ip: '127.0.0.14', country: 'us' },
    ]);
  });
  after(() => net?.close());

  const post = (path: string, body: unknown) =>
    net.api(path, { method: 'POST', body: JSON.stringify(body) });
  /** The address the target saw for a request with this username. */
  const exitSeenWith = async (username: string) => {
    const authority = `127.0.0.1:${net.targetPort}`;
    const basic = Buffer.from(`${username}:${net.key.secret}`).toString('base64');
    const answer = await exchangeText(
      net.ports.proxy,
      `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic}\r\nConnection: close\r\n\r\n`,
    );
    return /127\.0\.0\.\d+/.exec(answer.split('\r\n\r\n')[1] ?? '')?.[0];
  };

  test('a lease pins a matching exit, and its username leaves from it every time', async () => {
    const created = await post('/v1/leases', {
      key_id: net.key.id,
      country: 'us',
      ttl_seconds: 60,
    });
    assert.equal(created.status, 201);
    const lease = (await created.json()) as Lease;
    assert.ok(lease.exit);
    assert.ok(['127.0.0.13', '127.0.0.14'].includes(lease.exit.ip), lease.exit.ip);
    assert.equal(lease.exit.country, 'us');
    assert.equal(lease.active, true);
    assert.equal(lease.key_id, net.key.id);
    assert.match(
      lease.proxy_username,
      new RegExp(`^${net.key.id}-country-us-session-${lease.id}-ttl-1m$`),
    );
    assert.equal(lease.http_proxy, `127.0.0.1:${net.ports.proxy}`);
    const left = Date.parse(lease.expires_at ?? '') - Date.now();
    assert.ok(left > 50_000 && left <= 61_000, `expires in ${left} ms`);

    for (let i = 0; i < 6; i++) {
      assert.equal(await exitSeenWith(lease.proxy_username), lease.exit.ip);
    }

    const read = (await (await net.api(`/v1/leases/${lease.id}`)).json()) as Lease;
    assert.deepEqual(read.exit, lease.exit);
    const listed = (await (await net.api('/v1/leases')).json()) as { items: Lease[] };
    assert.ok(listed.items.some((item) => item.id === lease.id));

    const renewed = await post(`/v1/leases/${lease.id}/renew`, { ttl_seconds: 3600 });
    assert.equal(renewed.status, 200);
    const later = Date.parse(((await renewed.json()) as Lease).expires_at ?? '') - Date.now();
    assert.ok(later > 3_500_000, `renewed for ${later} ms`);

    assert.equal((await net.api(`/v1/leases/${lease.id}`, { method: 'DELETE' })).status, 204);
    const released = (await (await net.api(`/v1/leases/${lease.id}`)).json()) as Lease;
    assert.equal(released.active, false);
    assert.equal(released.exit, null);
    assert.equal(released.expires_at, null);
    const after = (await (await net.api('/v1/leases')).json()) as { items: Lease[] };
    assert.ok(!after.items.some((item) => item.id === lease.id), 'released leases are not listed');
    assert.equal((await net.api(`/v1/leases/${lease.id}`, { method: 'DELETE' })).status, 404);
    assert.equal((await post(`/v1/leases/${lease.id}/renew`, {})).status, 404);
  });

  test('an API key leases for itself without naming a key', async () => {
    const created = await fetch(`http://127.0.0.1:${net.ports.api}/v1/leases`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${net.key.id}.${net.key.secret}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ country: 'de' }),
    });
    assert.equal(created.status, 201);
    const lease = (await created.json()) as Lease;
    assert.equal(lease.key_id, net.key.id);
    assert.equal(lease.exit?.ip, '127.0.0.12');
    assert.equal(lease.ttl_seconds, 600);
    assert.equal(await exitSeenWith(lease.proxy_username), '127.0.0.12');
  });

  test('each use pushes the expiry back; unused, a lease lapses at its TTL', async () => {
    const created = await post('/v1/leases', {
      key_id: net.key.id,
      country: 'us',
      ttl_seconds: 30,
    });
    assert.equal(created.status, 201);
    const lease = (await created.json()) as Lease;
    const read = async () => (await (await net.api(`/v1/leases/${lease.id}`)).json()) as Lease;
    const firstExpiry = Date.parse(lease.expires_at ?? '');
    // The expiry is now plus the time to live left, read at different moments: a few ms
    // apart at most, where a renewal would move it by the whole TTL.
    const reread = Date.parse((await read()).expires_at ?? '');
    assert.ok(Math.abs(reread - firstExpiry) <= 10, 'reading it does not renew it');

    assert.equal(await exitSeenWith(lease.proxy_username), lease.exit?.ip);
    const used = await read();
    const usedExpiry = Date.parse(used.expires_at ?? '');
    assert.ok(
      usedExpiry > firstExpiry,
      `a use renews it: ${used.expires_at} after ${lease.expires_at}`,
    );

    // Polling the lease does not renew it, so it lapses on its own.
    await eventually(async () => !(await read()).active, 45_000, 'the lease to lapse');
    const lapsedAt = Date.now();
    assert.ok(lapsedAt >= usedExpiry - 1_000, `lapsed ${usedExpiry - lapsedAt} ms early`);
    assert.ok(lapsedAt <= usedExpiry + 5_000, `lapsed ${lapsedAt - usedExpiry} ms late`);
    const lapsed = await read();
    assert.equal(lapsed.exit, null);
    assert.equal(lapsed.expires_at, null);
    const listed = (await (await net.api('/v1/leases')).json()) as { items: Lease[] };
    const inList = listed.items.find((item) => item.id === lease.id);
    assert.equal(inList?.active, false, 'listed, as documented, with active false');
    assert.equal((await post(`/v1/leases/${lease.id}/renew`, {})).status, 404);
  });

  test('bad lease requests are refused with a code and leave nothing behind', async () => {
    const refused = async (body: unknown, status: number, code: string) => {
      const answer = await post('/v1/leases', body);
      assert.equal(answer.status, status, JSON.stringify(body));
      assert.equal(((await answer.json()) as { error: { code: string } }).error.code, code);
    };
    const before = ((await (await net.api('/v1/leases')).json()) as { items: Lease[] }).items
      .length;
    await refused({ key_id: net.key.id, country: 'fr' }, 503, 'no_exit_available');
    await refused({ country: 'us' }, 400, 'invalid_request');
    await refused({ key_id: net.key.id, ttl_seconds: 10 }, 400, 'invalid_request');
    await refused({ key_id: net.key.id, ttl_seconds: 86_401 }, 400, 'invalid_request');
    await refused({ key_id: net.key.id, country: 'USA' }, 400, 'invalid_request');
    await refused({ key_id: net.key.id, colour: 'blue' }, 400, 'invalid_request');
    await refused({ key_id: 'nosuchkey', country: 'us' }, 404, 'not_found');
    const after = ((await (await net.api('/v1/leases')).json()) as { items: Lease[] }).items.length;
    assert.equal(after, before);
    assert.equal((await net.api('/v1/leases/nosuchlease')).status, 404);
  });

  test('proxy lists: sticky lines each keep one exit, rotating lines share one username', async () => {
    const answer = await fetch(`http://127.0.0.1:${net.ports.api}/v1/proxy-lists`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${net.key.id}.${net.key.secret}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ count: 4, country: 'us', format: 'hostport' }),
    });
    assert.equal(answer.status, 200);
    const list = (await answer.json()) as components['schemas']['ProxyList'];
    assert.equal(list.password_included, true);
    assert.equal(list.proxies.length, 4);
    assert.equal(new Set(list.proxies).size, 4, 'each sticky line has its own session');
    for (const line of list.proxies) {
      const match = /^([^:]+):([^@]+)@127\.0\.0\.1:(\d+)$/.exec(line);
      assert.ok(match, line);
      assert.equal(match[2], net.key.secret);
      assert.equal(Number(match[3]), net.ports.proxy);
      const first = await exitSeenWith(match[1] as string);
      assert.ok(first === '127.0.0.13' || first === '127.0.0.14', String(first));
      assert.equal(await exitSeenWith(match[1] as string), first, 'a sticky line keeps its exit');
    }

    const rotating = (await (
      await post('/v1/proxy-lists', {
        key_id: net.key.id,
        count: 3,
        sticky: false,
        format: 'curl',
      })
    ).json()) as components['schemas']['ProxyList'];
    assert.equal(rotating.password_included, false, 'a signed-in user sees no secret');
    assert.deepEqual(
      rotating.proxies,
      Array(3).fill(
        `curl -x http://${net.key.id}:SECRET@127.0.0.1:${net.ports.proxy} https://example.com`,
      ),
    );

    const withSecret = await post('/v1/proxy-lists', {
      key_id: net.key.id,
      secret: net.key.secret,
      count: 1,
      format: 'socks_url',
    });
    const [line] = ((await withSecret.json()) as components['schemas']['ProxyList']).proxies;
    assert.match(
      line ?? '',
      new RegExp(
        `^socks5h://${net.key.id}-session-[0-9a-f]+-ttl-10m:${net.key.secret}@127\\.0\\.0\\.1:${net.ports.socks}$`,
      ),
    );
    const wrongSecret = await post('/v1/proxy-lists', { key_id: net.key.id, secret: 'nope' });
    assert.equal(wrongSecret.status, 400);
    assert.equal((await post('/v1/proxy-lists', { key_id: net.key.id, count: 1001 })).status, 400);
    assert.equal((await post('/v1/proxy-lists', { key_id: 'nosuchkey' })).status, 404);
  });
});
