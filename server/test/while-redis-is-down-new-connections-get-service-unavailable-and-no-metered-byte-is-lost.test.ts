/**
 * Redis (a private copy, kept on disk as production keeps it) killed under a running
 * server: new connections are refused with service_unavailable over HTTP, curl and SOCKS5
 * (not quota_exhausted, which would tell the customer their money is gone); a tunnel open
 * before goes on within the allowance it holds; the server stays up; and once Redis is
 * back traffic flows again and GET /v1/usage reports every byte the client moved, those
 * metered while Redis was down included (kept in the process and pushed when it returned).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { components } from '@ipcola/openapi';
import { allowanceBuckets } from '../src/metering/index.ts';
import { openRedisHotState } from '../src/store/index.ts';
import {
  createScratchDatabase,
  eventually,
  needs,
  quietLogger,
  required,
} from './support/engines.ts';
import { type PrivateService, privateRedis } from './support/private-services.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

const run = promisify(execFile);

type Report = components['schemas']['UsageReport'];
type Key = { id: string; secret: string };

/** Bytes each request on the long tunnel downloads: three of them fit in its first grant. */
const BODY_BYTES = 100_000;

/**
 * A CONNECT tunnel kept open across requests, every byte counted at the client: requests
 * go one at a time, each read to the end of its Content-Length body.
 */
async function openTunnel(port: number, authority: string, auth: string) {
  const socket: Socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.on('error', () => {});
  let up = 0;
  let received = Buffer.alloc(0);
  let down = 0;
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    down += chunk.length;
    received = Buffer.concat([received, chunk]);
    waiting?.();
  });
  const send = (text: string) => {
    up += Buffer.byteLength(text);
    socket.write(text);
  };
  /** Resolves with everything received once `done` says it is complete. */
  const until = (done: (text: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const text = received.toString('latin1');
        if (!done(text)) return;
        waiting = undefined;
        received = Buffer.alloc(0);
        resolve(text);
      };
      waiting = check;
      socket.once('close', () => reject(new Error(`tunnel closed; got ${received.length} bytes`)));
      check();
    });
  send(
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
  );
  assert.match(await until((text) => text.includes('\r\n\r\n')), /^HTTP\/1\.1 200 /);
  return {
    get counted() {
      return { up, down };
    },
    /** One GET of /bytes/n on the tunnel, read to its last body byte. */
    async get(bytes: number) {
      send(`GET /bytes/${bytes} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
      const text = await until((answer) => {
        const head = answer.indexOf('\r\n\r\n');
        return head >= 0 && answer.length - head - 4 >= bytes;
      });
      assert.match(text, /^HTTP\/1\.1 200 /);
    },
    async close() {
      socket.end();
      await once(socket, 'close');
    },
  };
}

describe('while Redis is down', { skip: needs('DATABASE_URL', 'REDIS_URL') }, () => {
  let redis: PrivateService;
  let dropDatabase: () => Promise<void> = async () => {};
  let net: ProxyNetwork;
  let curlKey: Key;
  /** The long tunnel's key, so that its bytes are reported apart. */
  let tunnelKey: Key;
  let tunnel: Awaited<ReturnType<typeof openTunnel>>;
  /** Bytes the client moved with net.key, counted at the client. */
  const moved = { up: 0, down: 0, requests: 0 };

  const basic = (key: Key) => Buffer.from(`${key.id}-country-de:${key.secret}`).toString('base64');
  const authority = () => `127.0.0.1:${net.targetPort}`;
  /** A short CONNECT with net.key (counted), or a refused one; its reply. */
  const connectOnce = async (key: Key) => {
    const request =
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic(key)}\r\n\r\n` +
      `GET / HTTP/1.1\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`;
    const reply = await exchange(net.ports.proxy, request);
    const text = reply.toString('latin1');
    // Refused requests are billed to nobody (a test of their own): only count what went through.
    if (key === net.key && text.startsWith('HTTP/1.1 200 ')) {
      moved.up += Buffer.byteLength(request);
      moved.down += reply.length;
      moved.requests += 1;
    }
    return text;
  };
  const curl = async (key: Key, write: string) => {
    const proxy = `http://${key.id}-country-de:${key.secret}@127.0.0.1:${net.ports.proxy}`;
    const args = ['-sS', '--max-time', '15', '-o', '/dev/null', '-w', write, '-p', '-x', proxy];
    const result = await run('curl', [...args, `${net.target}/`]).catch(
      (error: { stdout: string }) => error,
    );
    return result.stdout;
  };
  const everyByteReported = (key: Key, counts: () => typeof moved) =>
    eventually(
      async () => {
        const answer = await net.api(`/v1/usage?key_id=${key.id}`);
        if (answer.status !== 200) return false;
        const { totals } = (await answer.json()) as Report;
        const want = counts();
        return (
          totals.bytes_up === want.up &&
          totals.bytes_down === want.down &&
          totals.requests === want.requests
        );
      },
      20_000,
      `usage of ${key.id} to report ${JSON.stringify(counts())}`,
    );

  before(async () => {
    const scratch = await createScratchDatabase(required('DATABASE_URL'));
    dropDatabase = () => scratch.drop();
    redis = await privateRedis({ appendOnly: true });
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      DATABASE_URL: scratch.url,
      REDIS_URL: redis.url,
      TRUST_DECLARED_LOCATION: 'true',
      USAGE_FLUSH_INTERVAL_MS: '300',
      TRIAL_CREDIT: '50',
    });
    const newKey = async (name: string) =>
      (await (
        await net.api('/v1/keys', { method: 'POST', body: JSON.stringify({ name }) })
      ).json()) as Key;
    curlKey = await newKey('curl');
    tunnelKey = await newKey('tunnel');
    assert.match(await connectOnce(net.key), /^HTTP\/1\.1 200 /);
    tunnel = await openTunnel(net.ports.proxy, authority(), basic(tunnelKey));
    await tunnel.get(BODY_BYTES);
    await everyByteReported(net.key, () => moved);

    await redis.stop();
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${net.ports.api}/readyz`)).status === 503,
      10_000,
      'readiness to see Redis down',
    );
  });
  after(async () => {
    await net?.close();
    await redis?.dispose();
    await dropDatabase();
  });

  test('new connections are refused with service_unavailable over HTTP, curl and SOCKS5', async () => {
    const reply = await connectOnce(net.key);
    assert.match(reply, /^HTTP\/1\.1 503 service_unavailable\r\n/);
    assert.match(reply, /\r\nX-IPCola-Error: service_unavailable\r\n/);
    assert.match(
      reply,
      /\r\nProxy-Status: ipcola; error=proxy_internal_error; details="service_unavailable"\r\n/,
    );
    assert.match(reply, /\r\nRetry-After: 1\r\n/);

    const forwarded = await exchange(
      net.ports.proxy,
      `GET http://${authority()}/ HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic(net.key)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(forwarded.toString('latin1'), /^HTTP\/1\.1 503 service_unavailable\r\n/);

    assert.equal(await curl(curlKey, '%{http_connect}'), '503');

    const socks = await exchange(
      net.ports.socks,
      Buffer.concat([
        Buffer.from([0x05, 0x01, 0x02, 0x01, net.key.id.length]),
        Buffer.from(net.key.id),
        Buffer.from([net.key.secret.length]),
        Buffer.from(net.key.secret),
        Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]),
        Buffer.from([net.targetPort >> 8, net.targetPort & 0xff]),
      ]),
    );
    // The sub-negotiation passes; the CONNECT gets REP 0x01 (general failure).
    assert.deepEqual([...socks.subarray(0, 6)], [0x05, 0x02, 0x01, 0x00, 0x05, 0x01]);
  });

  test('the API answers what needs Redis with 503 not_ready, and the rest as usual', async () => {
    const lease = await net.api('/v1/leases', {
      method: 'POST',
      body: JSON.stringify({ key_id: net.key.id, country: 'de', ttl_seconds: 60 }),
    });
    assert.equal(lease.status, 503);
    assert.equal(lease.headers.get('retry-after'), '5');
    const body = (await lease.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'not_ready');
    assert.match(body.error.message, /Hot state is unavailable/);
    assert.equal((await net.api('/v1/keys')).status, 200);
  });

  test('a tunnel opened before goes on within the allowance it holds, and ends cleanly', async () => {
    const logsBefore = net.server.logs.length;
    await tunnel.get(BODY_BYTES);
    await tunnel.get(BODY_BYTES);
    // Ended while Redis is down: what it did not use of its grant cannot go back yet.
    await tunnel.close();
    // Its last bytes are metered and cannot be pushed: they stay in the process.
    await eventually(
      () =>
        net.server.logs
          .slice(logsBefore)
          .some((line) => line.msg === 'usage push failed; kept for the next one'),
      10_000,
      'a push of metered usage to fail and be kept',
    );
    assert.equal(net.server.child.exitCode, null, 'the server is still running');
  });

  test('once Redis is back, traffic flows and every metered byte is in the usage', async () => {
    await redis.start();
    await eventually(
      async () => (await curl(curlKey, '%{http_code}')) === '200',
      15_000,
      'traffic to flow again',
    );
    assert.match(await connectOnce(net.key), /^HTTP\/1\.1 200 /);
    await everyByteReported(net.key, () => moved);
    // A tunnel is one request however many it carries.
    await everyByteReported(tunnelKey, () => ({ ...tunnel.counted, requests: 1 }));
    assert.equal(net.server.child.exitCode, null, 'the server never stopped');
  });

  test("the long tunnel's unused grant went back once Redis returned: its key holds nothing", async () => {
    const hotState = await openRedisHotState(redis.url, quietLogger);
    try {
      const [, keyBucket] = allowanceBuckets(tunnelKey.id, 'any account');
      await eventually(
        async () => (await hotState.allowances.committed([keyBucket]))[0] === 0,
        15_000,
        "the tunnel key's committed bytes to come back to zero",
      );
    } finally {
      await hotState.close();
    }
  });
});
