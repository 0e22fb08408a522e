/**
 * PostgreSQL stopped under a running server (a private copy, with a private Redis): keys
 * the gateway verified before keep proxying on what the database last said of them, a key
 * it never saw is refused with service_unavailable (not quota_exhausted or auth_failed),
 * the API answers 503 not_ready with Retry-After, and once PostgreSQL is back the bytes
 * moved during the outage, counted at the client, are in GET /v1/usage to the byte.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { components } from '@ipcola/openapi';
import { eventually, needs } from './support/engines.ts';
import { type PrivateService, privatePostgres, privateRedis } from './support/private-services.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

const run = promisify(execFile);

type Report = components['schemas']['UsageReport'];
type Key = { id: string; secret: string };

/** A client address in a key's password-less range. */
const PASSWORDLESS_CLIENT = '127.0.0.21';
const STAND_IN_LOG = 'a store is unavailable: running on the last answers it gave';

describe('while PostgreSQL is down', { skip: needs('DATABASE_URL', 'REDIS_URL') }, () => {
  let postgres: PrivateService;
  let redis: PrivateService;
  let net: ProxyNetwork;
  /** A key made before the outage and never used: the gateway has no answer for it. */
  let unseenKey: Key;
  /** curl's key, used once before the outage (curl's bytes are not counted at the byte). */
  let curlKey: Key;
  /** Bytes the client moved with net.key, counted at the client. */
  const moved = { up: 0, down: 0, requests: 0 };

  const basic = (key: Key) => Buffer.from(`${key.id}-country-de:${key.secret}`).toString('base64');
  const authority = () => `127.0.0.1:${net.targetPort}`;

  /** A CONNECT tunnel carrying one request, counted both ways at the client; returns the reply. */
  const tunnel = async (key: Key, path = '/') => {
    const request =
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic(key)}\r\n\r\n` +
      `GET ${path} HTTP/1.1\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`;
    const reply = await exchange(net.ports.proxy, request);
    // Refused requests are billed to nobody (a test of their own): only count what went through.
    if (key === net.key && reply.toString('latin1').startsWith('HTTP/1.1 200 ')) {
      moved.up += Buffer.byteLength(request);
      moved.down += reply.length;
      moved.requests += 1;
    }
    return reply.toString('latin1');
  };
  /** A forwarded plain-HTTP request, counted the same way. */
  const forward = async (key: Key, path = '/') => {
    const request = `GET http://${authority()}${path} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic(key)}\r\nConnection: close\r\n\r\n`;
    const reply = await exchange(net.ports.proxy, request);
    // Refused requests are billed to nobody (a test of their own): only count what went through.
    if (key === net.key && reply.toString('latin1').startsWith('HTTP/1.1 200 ')) {
      moved.up += Buffer.byteLength(request);
      moved.down += reply.length;
      moved.requests += 1;
    }
    return reply.toString('latin1');
  };
  /** curl through the gateway with curlKey (or another); its `-w` output. */
  const curl = async (key: Key, write: string, path = '/') => {
    const proxy = `http://${key.id}-country-de:${key.secret}@127.0.0.1:${net.ports.proxy}`;
    const args = ['-sS', '--max-time', '15', '-o', '/dev/null', '-w', write, '-p', '-x', proxy];
    const result = await run('curl', [...args, `${net.target}${path}`]).catch(
      (error: { stdout: string }) => error,
    );
    return result.stdout;
  };
  /** curl without credentials from PASSWORDLESS_CLIENT: its CONNECT status. */
  const passwordlessCurl = async () => {
    const args = ['-sS', '--max-time', '15', '-o', '/dev/null', '-w', '%{http_code}', '-p'];
    const proxy = ['--interface', PASSWORDLESS_CLIENT, '-x', `http://127.0.0.1:${net.ports.proxy}`];
    const result = await run('curl', [...args, ...proxy, `${net.target}/`]).catch(
      (error: { stdout: string }) => error,
    );
    return result.stdout;
  };
  const usageOfKey = async () => {
    const answer = await net.api(`/v1/usage?key_id=${net.key.id}`);
    if (answer.status !== 200) return null;
    return ((await answer.json()) as Report).totals;
  };
  const everyByteReported = () =>
    eventually(
      async () => {
        const totals = await usageOfKey();
        return (
          totals?.bytes_up === moved.up &&
          totals.bytes_down === moved.down &&
          totals.requests === moved.requests
        );
      },
      20_000,
      `usage to report ${JSON.stringify(moved)}`,
    );

  before(async () => {
    postgres = await privatePostgres();
    redis = await privateRedis();
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      // With DATABASE_URL set, declared locations are not trusted by default.
      TRUST_DECLARED_LOCATION: 'true',
      USAGE_FLUSH_INTERVAL_MS: '300',
      TRIAL_CREDIT: '50',
    });
    const newKey = async (name: string) =>
      (await (
        await net.api('/v1/keys', { method: 'POST', body: JSON.stringify({ name }) })
      ).json()) as Key;
    unseenKey = await newKey('unseen');
    curlKey = await newKey('curl');
    assert.equal(await curl(curlKey, '%{http_code}'), '200');
    // Connections without credentials from 127.0.0.21 are this key's.
    const ranged = await net.api('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({
        name: 'password-less',
        passwordless_cidrs: [`${PASSWORDLESS_CLIENT}/32`],
        default_targeting: 'country-de',
      }),
    });
    assert.equal(ranged.status, 201);
    assert.equal(await passwordlessCurl(), '200');
    // The key is verified, judged and granted once while the database is up.
    assert.match(await tunnel(net.key), /^HTTP\/1\.1 200 /);
    await everyByteReported();

    await postgres.stop();
    await eventually(
      // A reused keep-alive connection the server just closed is a retry, not an answer.
      async () =>
        (await fetch(`http://127.0.0.1:${net.ports.api}/readyz`).catch(() => null))?.status === 503,
      10_000,
      'readiness to see the database down',
    );
  });
  after(async () => {
    await net?.close();
    await redis?.dispose();
    await postgres?.dispose();
  });

  test('a key verified before keeps proxying over CONNECT, forwarding and curl', async () => {
    // Until the gateway's one-second caches have run out and it says it runs on the
    // database's last answers: for the key's verification, its verdict and its limits.
    const standIns = () =>
      new Set(
        net.server.logs
          .filter(
            (line) => line.msg === 'a store is unavailable: running on the last answers it gave',
          )
          .map((line) => line.standIn),
      );
    await eventually(
      async () => {
        assert.match(await tunnel(net.key), /^HTTP\/1\.1 200 /);
        const seen = standIns();
        return seen.has('key') && seen.has('verdict') && seen.has('limits');
      },
      15_000,
      'the gateway to run on the last answers of the database',
    );
    for (let i = 0; i < 3; i++) {
      assert.match(await tunnel(net.key, '/bytes/200000'), /^HTTP\/1\.1 200 /);
      assert.match(await forward(net.key, '/bytes/100000'), /^HTTP\/1\.1 200 /);
    }
    assert.equal(await curl(curlKey, '%{http_code} %{size_download}', '/bytes/50000'), '200 50000');
    const answer = await usageOfKey();
    assert.equal(answer, null, 'the usage API cannot answer yet');
  });

  test('a client of a password-less range seen before keeps proxying without credentials', async () => {
    await eventually(
      async () =>
        (await passwordlessCurl()) === '200' &&
        net.server.logs.some((line) => line.msg === STAND_IN_LOG && line.standIn === 'address'),
      15_000,
      "the gateway to run on the database's last answer for the address",
    );
  });

  test('a key the gateway never saw is refused with service_unavailable, over HTTP and SOCKS5', async () => {
    const reply = await tunnel(unseenKey);
    assert.match(reply, /^HTTP\/1\.1 503 service_unavailable\r\n/);
    assert.match(reply, /\r\nX-IPCola-Error: service_unavailable\r\n/);
    assert.match(
      reply,
      /\r\nProxy-Status: ipcola; error=proxy_internal_error; details="service_unavailable"\r\n/,
    );
    assert.match(reply, /\r\nRetry-After: 1\r\n/);

    assert.equal(await curl(unseenKey, '%{http_connect}'), '503');

    // SOCKS5: the sub-negotiation passes, the CONNECT gets REP 0x01 (general failure).
    const socks = await exchange(
      net.ports.socks,
      Buffer.concat([
        Buffer.from([0x05, 0x01, 0x02]),
        Buffer.from([0x01, unseenKey.id.length]),
        Buffer.from(unseenKey.id),
        Buffer.from([unseenKey.secret.length]),
        Buffer.from(unseenKey.secret),
        Buffer.from([
          0x05,
          0x01,
          0x00,
          0x01,
          127,
          0,
          0,
          1,
          net.targetPort >> 8,
          net.targetPort & 0xff,
        ]),
      ]),
    );
    assert.deepEqual([...socks.subarray(0, 6)], [0x05, 0x02, 0x01, 0x00, 0x05, 0x01]);
  });

  test('the API answers 503 not_ready with Retry-After instead of 500', async () => {
    const bearer = { authorization: `Bearer ${net.key.id}.${net.key.secret}` };
    const asked: Array<[string, RequestInit]> = [
      ['/v1/keys', {}],
      ['/v1/me', {}],
      ['/v1/usage', {}],
      ['/v1/billing', {}],
      ['/v1/nodes', {}],
      ['/v1/webhooks', {}],
      ['/v1/keys', { method: 'POST', body: '{"name":"during the outage"}' }],
      // The same with an API key instead of the session cookie.
      ['/v1/usage', { headers: bearer }],
    ];
    for (const [path, init] of asked) {
      const answer = await net.api(path, init);
      assert.equal(answer.status, 503, `${init.method ?? 'GET'} ${path}`);
      assert.equal(answer.headers.get('retry-after'), '5');
      const body = (await answer.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'not_ready');
      assert.match(body.error.message, /database is unavailable/);
    }
  });

  test('an exit node whose agent reconnects during the outage is let in on its last answer', async () => {
    // The node's token was verified when it first attached; its agent dies and comes back.
    await net.restartAgent('127.0.0.12');
    await eventually(
      async () => (await tunnel(net.key)).startsWith('HTTP/1.1 200 '),
      15_000,
      'traffic through the exit again',
    );
  });

  test('once PostgreSQL is back, the usage moved during the outage is reported to the byte', async () => {
    await postgres.start();
    await everyByteReported();
    assert.equal(net.server.child.exitCode, null, 'the server is still running');
    // And new keys verify again.
    assert.match(await tunnel(unseenKey), /^HTTP\/1\.1 200 /);
  });
});
