/**
 * Managing keys through the API (list, read, change, revoke) and what the gateway makes
 * of it within a second, on new connections and on tunnels already open: a revoked or
 * disabled key is cut and refused with auth_failed, a key past its new monthly cap is cut
 * and refused with quota_exhausted, and lifting the change lets traffic through again.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/** Revocation and limit changes reach open tunnels within this long. */
const WITHIN_MS = 1_000;

interface Key {
  id: string;
  name: string;
  disabled: boolean;
  monthly_byte_cap: number | null;
  max_concurrency: number | null;
}

describe('key changes reach open tunnels within a second', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
  });
  after(() => net?.close());

  const newKey = async (name: string, scopes: string[] = ['proxy']) =>
    (await (
      await net.api('/v1/keys', { method: 'POST', body: JSON.stringify({ name, scopes }) })
    ).json()) as { id: string; secret: string };
  const authority = () => `127.0.0.1:${net.targetPort}`;
  const connectRequest = (key: { id: string; secret: string }) => {
    const basic = Buffer.from(`${key.id}-country-de:${key.secret}`).toString('base64');
    return `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`;
  };

  /** An endless download through a tunnel; resolves once bytes flow. */
  const openDownload = async (key: { id: string; secret: string }, from = '127.0.0.1') => {
    const socket: Socket = connect({
      port: net.ports.proxy,
      host: '127.0.0.1',
      localAddress: from,
    });
    await once(socket, 'connect');
    socket.on('error', () => {});
    let received = 0;
    // A cut may be a reset ('error' before 'close'): once(socket, 'close') would reject.
    const closed = new Promise<number>((resolve) =>
      socket.once('close', () => resolve(performance.now())),
    );
    // A tunnel that is never cut ends here, so that the timing assertion fails, not hangs.
    setTimeout(() => socket.destroy(), 10 * WITHIN_MS).unref();
    socket.write(`${connectRequest(key)}GET /drip HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`);
    await new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 256 * 1024) resolve();
      });
    });
    return {
      closed,
      received: () => received,
      /** Resolves once `bytes` have arrived; rejects when the tunnel closes first. */
      reached: (bytes: number) =>
        new Promise<void>((resolve, reject) => {
          const check = () => {
            if (received >= bytes) {
              socket.off('data', check);
              resolve();
            }
          };
          socket.on('data', check);
          socket.once('close', () => reject(new Error(`closed after ${received} bytes`)));
        }),
    };
  };

  /** The status line of the gateway's answer to a CONNECT with this key. */
  const connectStatus = async (key: { id: string; secret: string }) => {
    const socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.write(connectRequest(key));
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    const head = chunk.toString('latin1');
    return `${head.split('\r\n')[0]} ${/X-IPCola-Error: (\S+)/.exec(head)?.[1] ?? ''}`.trim();
  };

  test('keys are listed in pages, read, renamed and refused when malformed or foreign', async () => {
    const second = await newKey('second');
    const third = await newKey('third');
    const all = (await (await net.api('/v1/keys')).json()) as { items: Key[]; next_cursor: null };
    assert.deepEqual(
      all.items.map((key) => key.id),
      [net.key.id, second.id, third.id],
    );
    assert.equal(all.next_cursor, null);
    assert.ok(
      all.items.every((key) => !('secret' in key)),
      'no secret is ever listed',
    );

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (await (
        await net.api(`/v1/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).json()) as { items: Key[]; next_cursor: string | null };
      seen.push(...page.items.map((key) => key.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [net.key.id, second.id, third.id]);

    const renamed = await net.api(`/v1/keys/${second.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ name: 'renamed', max_concurrency: 5 }),
    });
    assert.equal(renamed.status, 200);
    const read = (await (await net.api(`/v1/keys/${second.id}`)).json()) as Key;
    assert.equal(read.name, 'renamed');
    assert.equal(read.max_concurrency, 5);
    assert.equal(read.monthly_byte_cap, null);

    for (const body of [
      '{"colour":"blue"}',
      '{"max_concurrency":0}',
      '{"monthly_byte_cap":-1}',
      '{"disabled":"yes"}',
      '{"name":"bell\\u0007"}',
      '[]',
    ]) {
      const answer = await net.api(`/v1/keys/${second.id}`, { method: 'PATCH', body });
      assert.equal(answer.status, 400, body);
      assert.equal(
        ((await answer.json()) as { error: { code: string } }).error.code,
        'invalid_request',
      );
    }
    for (const [method, path] of [
      ['GET', '/v1/keys/nosuchkey'],
      ['PATCH', '/v1/keys/nosuchkey'],
      ['DELETE', '/v1/keys/nosuchkey'],
      ['GET', '/v1/keys/..%2Fme'],
    ] as const) {
      const answer = await net.api(path, {
        method,
        ...(method === 'PATCH' ? { body: '{"name":"x"}' } : {}),
      });
      assert.equal(answer.status, 404, `${method} ${path}`);
    }
    await assert.rejects(
      net.api('/v1/keys?limit=0').then(async (answer) => {
        if (answer.status !== 200) throw new Error(String(answer.status));
      }),
      /400/,
    );
  });

  test('revoking a key cuts its open tunnel within a second and refuses it from then on', async () => {
    // Also a bearer token, to see the API refuse it once revoked.
    const key = await newKey('to revoke', ['proxy', 'api']);
    const download = await openDownload(key);
    const revoked = await net.api(`/v1/keys/${key.id}`, { method: 'DELETE' });
    assert.equal(revoked.status, 204);
    const revokedAt = performance.now();
    const closedAt = await download.closed;
    assert.ok(
      closedAt - revokedAt <= WITHIN_MS,
      `the tunnel closed ${Math.round(closedAt - revokedAt)} ms after the revocation`,
    );
    assert.equal(await connectStatus(key), 'HTTP/1.1 407 auth_failed auth_failed');
    const bearer = await fetch(`http://127.0.0.1:${net.ports.api}/v1/me`, {
      headers: { authorization: `Bearer ${key.id}.${key.secret}` },
    });
    assert.equal(bearer.status, 401, 'the API refuses the revoked key too');
    assert.equal((await net.api(`/v1/keys/${key.id}`)).status, 404, 'a revoked key is gone');
  });

  test('disabling cuts within a second; enabling lets the key through again', async () => {
    const key = await newKey('to disable');
    const download = await openDownload(key);
    await net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: '{"disabled":true}' });
    const disabledAt = performance.now();
    assert.ok((await download.closed) - disabledAt <= WITHIN_MS);
    assert.match(await connectStatus(key), /^HTTP\/1\.1 407 .* auth_failed$/);
    await net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: '{"disabled":false}' });
    await eventually(
      async () => (await connectStatus(key)).startsWith('HTTP/1.1 200'),
      WITHIN_MS * 3,
      'the enabled key to be let through',
    );
  });

  test('a monthly cap below what the key moved cuts it and refuses it with quota_exhausted', async () => {
    const key = await newKey('to cap');
    const download = await openDownload(key);
    const capped = await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: '{"monthly_byte_cap":100000}',
    });
    assert.equal(((await capped.json()) as Key).monthly_byte_cap, 100_000);
    const cappedAt = performance.now();
    assert.ok((await download.closed) - cappedAt <= WITHIN_MS);
    assert.equal(await connectStatus(key), 'HTTP/1.1 402 quota_exhausted quota_exhausted');
    await net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: '{"monthly_byte_cap":null}' });
    await eventually(
      async () => (await connectStatus(key)).startsWith('HTTP/1.1 200'),
      WITHIN_MS * 3,
      'the uncapped key to be let through',
    );
  });

  test('rotating a key cuts tunnels opened with the old secret, not those opened with the new', async () => {
    const key = await newKey('to rotate');
    const old = await openDownload(key);
    const answer = await net.api(`/v1/keys/${key.id}/rotate`, { method: 'POST' });
    assert.equal(answer.status, 200);
    const rotated = (await answer.json()) as { id: string; secret: string; http_proxy_url: string };
    const rotatedAt = performance.now();
    assert.equal(rotated.id, key.id);
    assert.notEqual(rotated.secret, key.secret);
    assert.ok(rotated.http_proxy_url.includes(rotated.secret));
    assert.ok((await old.closed) - rotatedAt <= WITHIN_MS, 'the old-secret tunnel was cut');
    await eventually(
      async () => (await connectStatus(key)).startsWith('HTTP/1.1 407'),
      WITHIN_MS,
      'the old secret to be refused',
    );
    // A tunnel opened with the new secret outlives several limit checks (500 ms each):
    // 16 MB of the target's 6.4 MB/s drip take some 2.5 s.
    const fresh = await openDownload(rotated);
    await fresh.reached(16 * 1024 * 1024);
  });

  test('a client allow-list and allowed countries restrict the key from the next connection on', async () => {
    const key = await newKey('restricted');
    const status = async (from: string, country: string) => {
      const socket = connect({ port: net.ports.proxy, host: '127.0.0.1', localAddress: from });
      await once(socket, 'connect');
      socket.on('error', () => {});
      const basic = Buffer.from(
        `${key.id}${country ? `-country-${country}` : ''}:${key.secret}`,
      ).toString('base64');
      socket.write(
        `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`,
      );
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      socket.destroy();
      const head = chunk.toString('latin1');
      return `${head.split(' ')[1]} ${/X-IPCola-Error: (\S+)/.exec(head)?.[1] ?? ''}`.trim();
    };
    const patched = await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: JSON.stringify({
        client_allowlist: ['127.0.0.90', '127.0.1.0/24'],
        allowed_countries: ['de'],
      }),
    });
    assert.equal(patched.status, 200);
    const view = (await patched.json()) as {
      client_allowlist: string[];
      allowed_countries: string[];
    };
    assert.deepEqual(view.client_allowlist, ['127.0.0.90/32', '127.0.1.0/24']);
    assert.deepEqual(view.allowed_countries, ['de']);
    await eventually(
      async () => (await status('127.0.0.91', 'de')) === '403 ip_not_allowed',
      WITHIN_MS * 2,
      'the allow-list to refuse another address',
    );
    assert.equal(await status('127.0.0.90', 'de'), '200');
    assert.equal(await status('127.0.1.7', 'de'), '200');
    assert.equal(await status('127.0.0.90', 'us'), '400 bad_params');
    assert.equal(await status('127.0.0.90', ''), '400 bad_params', 'the key must name a country');

    const bad = await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ client_allowlist: ['not-an-address'] }),
    });
    assert.equal(bad.status, 400);
    await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ client_allowlist: null, allowed_countries: null }),
    });
    await eventually(
      async () => (await status('127.0.0.91', '')) === '200',
      WITHIN_MS * 2,
      'the lifted restrictions to let any address and country through',
    );
  });

  test('a lower concurrency or a narrower allow-list also cuts open tunnels, newest first', async () => {
    const key = await newKey('narrowed');
    const oldest = await openDownload(key, '127.0.0.90');
    const middle = await openDownload(key, '127.0.0.90');
    const newest = await openDownload(key, '127.0.0.91');
    await net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: '{"max_concurrency":2}' });
    const loweredAt = performance.now();
    assert.ok((await newest.closed) - loweredAt <= WITHIN_MS, 'the newest beyond the cap is cut');

    await net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: '{"max_concurrency":null}' });
    const outsider = await openDownload(key, '127.0.0.91');
    await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: '{"client_allowlist":["127.0.0.90"]}',
    });
    const narrowedAt = performance.now();
    assert.ok((await outsider.closed) - narrowedAt <= WITHIN_MS, 'the outsider is cut');
    // The tunnels from the allowed address outlive several checks (500 ms each).
    await Promise.all([oldest.reached(24 * 1024 * 1024), middle.reached(24 * 1024 * 1024)]);
  });
});
