/**
 * End to end through the real server and agent: the bytes a client writes to and reads
 * from the gateway (CONNECT and plain forwarding) come back from GET /v1/usage and the
 * CSV export, per key and per exit country, and their price is debited from the balance; the query
 * parameters are checked, pages follow their cursor, and another account's key is "not
 * found".
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { components } from '@ipcola/openapi';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';
import { signedInApi } from './support/server-process.ts';

const TRIAL_CREDIT = '0.20';
const TRIAL_MICRO = 200_000;
/** The default residential price per GB, micro-units: the agents' type. */
const RESIDENTIAL_PRICE = 4_000_000;

type Report = components['schemas']['UsageReport'];

/** One connection to the gateway: writes `request`, reads until the gateway closes, counts both ways. */
async function counted(
  port: number,
  request: string,
): Promise<{ up: number; down: number; reply: string }> {
  const reply = await exchange(port, request);
  return { up: Buffer.byteLength(request), down: reply.length, reply: reply.toString('latin1') };
}

describe('the usage API reports every byte the client moved', () => {
  let net: ProxyNetwork;
  let otherKey: { id: string; secret: string };
  const moved = new Map<string, { up: number; down: number; requests: number }>();
  const movedIn = new Map<string, { up: number; down: number; requests: number }>();
  /** Per key and exit country: one usage row each (one exit per country), priced alone. */
  const movedBy = new Map<string, { up: number; down: number; requests: number }>();

  const basic = (key: { id: string; secret: string }, country = 'de') =>
    Buffer.from(`${key.id}-country-${country}:${key.secret}`).toString('base64');
  const targetAuthority = () => `127.0.0.1:${net.targetPort}`;

  /** A CONNECT tunnel carrying one request with Connection: close. */
  const tunnel = async (key: { id: string; secret: string }, country = 'de') => {
    const result = await counted(
      net.ports.proxy,
      `CONNECT ${targetAuthority()} HTTP/1.1\r\nHost: ${targetAuthority()}\r\nProxy-Authorization: Basic ${basic(key, country)}\r\n\r\n` +
        `GET / HTTP/1.1\r\nHost: ${targetAuthority()}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(result.reply, /^HTTP\/1\.1 200 /);
    const exitIp = country === 'de' ? /127\.0\.0\.12/ : /127\.0\.0\.13/;
    assert.match(result.reply, exitIp, 'the target saw the exit IP');
    count(key.id, result, 1, country);
  };
  /** A plain-HTTP forwarded request with Connection: close. */
  const forward = async (key: { id: string; secret: string }) => {
    const result = await counted(
      net.ports.proxy,
      `GET http://${targetAuthority()}/ HTTP/1.1\r\nHost: ${targetAuthority()}\r\nProxy-Authorization: Basic ${basic(key)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(result.reply, /^HTTP\/1\.1 200 /);
    count(key.id, result, 1, 'de');
  };
  const count = (
    keyId: string,
    result: { up: number; down: number },
    requests: number,
    country: string,
  ) => {
    for (const [table, id] of [
      [moved, keyId],
      [movedIn, country],
      [movedBy, `${keyId}|${country}`],
    ] as const) {
      const sum = table.get(id) ?? { up: 0, down: 0, requests: 0 };
      table.set(id, {
        up: sum.up + result.up,
        down: sum.down + result.down,
        requests: sum.requests + requests,
      });
    }
  };
  const report = async (query = '') => {
    const answer = await net.api(`/v1/usage${query}`);
    return {
      status: answer.status,
      body: (await answer.json()) as Report & { error?: { code: string } },
    };
  };

  before(async () => {
    net = await startProxyNetwork(
      [
        { ip: '127.0.0.12', country: 'de' },
        { ip: '127.0.0.13', country: 'us' },
      ],
      {
        USAGE_FLUSH_INTERVAL_MS: '200',
        TRIAL_CREDIT,
      },
    );
    const created = await net.api('/v1/keys', {
      method: 'POST',
      body: '{"name":"second, \\"quoted\\""}',
    });
    otherKey = (await created.json()) as { id: string; secret: string };
    await tunnel(net.key);
    await forward(net.key);
    await tunnel(otherKey);
    await tunnel(net.key, 'us');
  });
  after(() => net?.close());

  test('totals and rows equal the bytes and requests the client counted', async () => {
    const first = moved.get(net.key.id);
    const second = moved.get(otherKey.id);
    assert.ok(first && second);
    let answer = await report();
    await eventually(
      async () => {
        answer = await report();
        return answer.status === 200 && answer.body.totals.requests === 4;
      },
      10_000,
      'four requests in the usage report',
    );
    const { body } = answer;
    assert.deepEqual(body.totals, {
      bytes_up: first.up + second.up,
      bytes_down: first.down + second.down,
      requests: 4,
    });
    assert.equal(body.granularity, 'hour');
    assert.equal(body.next_cursor, null);
    const byKey = new Map(body.items.map((item) => [item.key_id, item]));
    assert.deepEqual(
      [
        byKey.get(net.key.id)?.bytes_up,
        byKey.get(net.key.id)?.bytes_down,
        byKey.get(net.key.id)?.requests,
      ],
      [first.up, first.down, 3],
    );
    assert.equal(byKey.get(otherKey.id)?.bytes_down, second.down);
    assert.equal(byKey.get(otherKey.id)?.key_name, 'second, "quoted"');

    const only = await report(`?key_id=${otherKey.id}&granularity=day`);
    assert.equal(only.status, 200);
    assert.deepEqual(only.body.totals, {
      bytes_up: second.up,
      bytes_down: second.down,
      requests: 1,
    });
    assert.equal(only.body.items.length, 1);
    assert.match(only.body.items[0]?.period_start ?? '', /T00:00:00\.000Z$/);
  });

  test('country= keeps the traffic that left through exits of that country', async () => {
    const de = movedIn.get('de');
    const us = movedIn.get('us');
    assert.ok(de && us);
    // The first test waited until all of it was flushed.
    const inDe = await report('?country=de');
    assert.equal(inDe.status, 200);
    assert.deepEqual(inDe.body.totals, { bytes_up: de.up, bytes_down: de.down, requests: 3 });
    assert.deepEqual(
      new Set(inDe.body.items.map((item) => item.key_id)),
      new Set([net.key.id, otherKey.id]),
      'both keys used de exits',
    );

    const inUs = await report('?country=US');
    assert.equal(inUs.status, 200, 'the country is read in either case');
    assert.deepEqual(inUs.body.totals, { bytes_up: us.up, bytes_down: us.down, requests: 1 });
    assert.deepEqual(
      inUs.body.items.map((item) => [item.key_id, item.bytes_down]),
      [[net.key.id, us.down]],
    );

    const both = await report(`?country=us&key_id=${otherKey.id}`);
    assert.deepEqual(both.body.totals, { bytes_up: 0, bytes_down: 0, requests: 0 });
    assert.deepEqual(both.body.items, []);

    const csv = await net.api('/v1/usage/export.csv?country=us');
    assert.equal(csv.status, 200);
    const lines = (await csv.text()).trim().split('\r\n');
    assert.equal(lines.length, 2, 'a header and the one us row');
    assert.match(lines[1] ?? '', new RegExp(`,${us.down},1$`));

    for (const bad of ['usa', 'd', '12']) {
      const refused = await report(`?country=${bad}`);
      assert.equal(refused.status, 400, bad);
      assert.equal(refused.body.error?.code, 'invalid_request');
    }
  });

  test('the balance is debited by exactly the price of the bytes moved', async () => {
    // Each usage row is charged its bytes at its exit's price (residential by default),
    // rounded down.
    const charged = [...movedBy.values()].reduce(
      (sum, m) => sum + Math.floor(((m.up + m.down) * RESIDENTIAL_PRICE) / 1e9),
      0,
    );
    assert.ok(charged > 0);
    const balance = async () =>
      (
        (await (await net.api('/v1/me')).json()) as {
          account: { balance: { amount_micro: number } };
        }
      ).account.balance.amount_micro;
    await eventually(
      async () => (await balance()) === TRIAL_MICRO - charged,
      10_000,
      `the balance to be ${TRIAL_MICRO} - ${charged}`,
    );
  });

  test('pages of one row follow the cursor, and every page carries the same totals', async () => {
    const whole = await report();
    const seen: string[] = [];
    let cursor: string | null = '';
    let pages = 0;
    while (cursor !== null) {
      const page = await report(`?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200);
      assert.deepEqual(page.body.totals, whole.body.totals);
      assert.ok(page.body.items.length <= 1);
      for (const item of page.body.items) seen.push(item.key_id);
      cursor = page.body.next_cursor;
      pages += 1;
      assert.ok(pages <= 10, 'the cursor ends');
    }
    assert.deepEqual(
      seen,
      whole.body.items.map((item) => item.key_id),
    );
  });

  test('the CSV export has a header and one quoted, safe line per row', async () => {
    const answer = await net.api('/v1/usage/export.csv');
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get('content-type') ?? '', /^text\/csv/);
    const lines = (await answer.text()).trimEnd().split('\r\n');
    assert.equal(lines[0], 'period_start,key_id,key_name,bytes_up,bytes_down,requests');
    const second = moved.get(otherKey.id);
    assert.ok(
      lines.some((line) =>
        line.includes(`,${otherKey.id},"second, ""quoted""",${second?.up},${second?.down},1`),
      ),
      lines.join('\n'),
    );
  });

  test('the connections open now are counted per key of the account, and go when they close', async () => {
    assert.deepEqual((await report()).body.open_connections, { total: 0, by_key: [] });
    const open = async (key: { id: string; secret: string }) => {
      const socket = connect(net.ports.proxy, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write(
        `CONNECT ${targetAuthority()} HTTP/1.1\r\nHost: ${targetAuthority()}\r\nProxy-Authorization: Basic ${basic(key)}\r\n\r\n`,
      );
      const [answer] = (await once(socket, 'data')) as [Buffer];
      assert.match(answer.toString('latin1'), /^HTTP\/1\.1 200 /);
      return socket;
    };
    const held = [await open(net.key), await open(net.key), await open(otherKey)];
    // Another account's open connection is not this account's business.
    const stranger = await signedInApi(net.ports.api, `stranger-${Date.now()}@example.com`);
    const theirs = (await (await stranger('/v1/keys', { method: 'POST', body: '{}' })).json()) as {
      id: string;
      secret: string;
    };
    held.push(await open(theirs));
    try {
      const expected = [
        { key_id: net.key.id, open: 2 },
        { key_id: otherKey.id, open: 1 },
      ].sort((a, b) => a.key_id.localeCompare(b.key_id));
      assert.deepEqual((await report()).body.open_connections, { total: 3, by_key: expected });
      assert.deepEqual((await report(`?key_id=${otherKey.id}`)).body.open_connections, {
        total: 1,
        by_key: [{ key_id: otherKey.id, open: 1 }],
      });
    } finally {
      for (const socket of held) socket.destroy();
    }
    await eventually(
      async () => (await report()).body.open_connections.total === 0,
      5_000,
      'the closed tunnels to be counted out',
    );
  });

  test('bad parameters are refused with invalid_request, foreign keys are not found', async () => {
    const refused = async (query: string, status: number, code: string) => {
      const answer = await report(query);
      assert.equal(answer.status, status, query);
      assert.equal(answer.body.error?.code, code, query);
    };
    await refused('?granularity=week', 400, 'invalid_request');
    await refused('?from=yesterday', 400, 'invalid_request');
    await refused('?from=2026-11-24T10:00:00Z&to=2026-11-24T09:00:00Z', 400, 'invalid_request');
    await refused('?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z', 400, 'invalid_request');
    await refused('?limit=0', 400, 'invalid_request');
    await refused('?limit=5001', 400, 'invalid_request');
    await refused('?cursor=not-a-cursor', 400, 'invalid_request');
    await refused('?granularity=hour&granularity=day', 400, 'invalid_request');
    await refused('?colour=blue', 400, 'invalid_request');
    await refused('?key_id=nosuchkey', 404, 'not_found');

    // A key of another account is as unknown as a key that does not exist.
    const other = await signedInApi(net.ports.api, `other-${Date.now()}@example.com`);
    const foreign = (await (await other('/v1/keys', { method: 'POST', body: '{}' })).json()) as {
      id: string;
    };
    await refused(`?key_id=${foreign.id}`, 404, 'not_found');

    const anonymous = await fetch(`http://127.0.0.1:${net.ports.api}/v1/usage`);
    assert.equal(anonymous.status, 401);
    const posted = await net.api('/v1/usage', { method: 'POST', body: '{}' });
    assert.equal(posted.status, 405);
  });
});
