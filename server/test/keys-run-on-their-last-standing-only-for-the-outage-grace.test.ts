/**
 * The bound in time of running without PostgreSQL (OUTAGE_GRACE_MS, 5 minutes by default;
 * 3 s here): a key keeps its tunnels and gets new ones on what the database last said of it
 * until that answer is older than the grace; then new connections get service_unavailable
 * and an open tunnel is cut at its next grant. Once PostgreSQL is back the key works again.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually, needs } from './support/engines.ts';
import { type PrivateService, privatePostgres, privateRedis } from './support/private-services.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

const GRACE_MS = 3_000;
/** What a busy two-core machine may add to the grace before the refusal shows. */
const SLACK_MS = 4_000;

describe('keys run on their last standing only for the outage grace', {
  skip: needs('DATABASE_URL', 'REDIS_URL'),
}, () => {
  let postgres: PrivateService;
  let redis: PrivateService;
  let net: ProxyNetwork;

  const basic = () => Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
  const authority = () => `127.0.0.1:${net.targetPort}`;
  const connectOnce = async () =>
    (
      await exchange(
        net.ports.proxy,
        `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n` +
          `GET / HTTP/1.1\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`,
      )
    ).toString('latin1');

  before(async () => {
    postgres = await privatePostgres();
    redis = await privateRedis();
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      TRUST_DECLARED_LOCATION: 'true',
      OUTAGE_GRACE_MS: String(GRACE_MS),
      TRIAL_CREDIT: '50',
    });
    assert.match(await connectOnce(), /^HTTP\/1\.1 200 /);
  });
  after(async () => {
    await net?.close();
    await redis?.dispose();
    await postgres?.dispose();
  });

  test('past the grace, new connections get service_unavailable and an open tunnel is cut', async (t) => {
    // A download that never ends by itself (the target's /drip, 6.4 MB/s): it asks for a
    // grant every 160 ms, so it is cut at the first one after the grace.
    const socket: Socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    let down = 0;
    socket.on('data', (chunk: Buffer) => {
      down += chunk.length;
    });
    socket.write(
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n` +
        `GET /drip HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
    );
    await eventually(() => down > 1_000_000, 10_000, 'the download to get going');
    let closedAt = 0;
    socket.once('close', () => {
      closedAt = performance.now();
    });

    await postgres.stop();
    const stoppedAt = performance.now();
    const downAtStop = down;
    let refusedAt = 0;
    await eventually(
      async () => {
        const reply = await connectOnce();
        if (reply.startsWith('HTTP/1.1 200 ')) return false;
        assert.match(reply, /^HTTP\/1\.1 503 service_unavailable\r\n/);
        refusedAt = performance.now();
        return true;
      },
      GRACE_MS + SLACK_MS,
      'new connections to be refused once the grace is over',
    );
    await eventually(() => closedAt > 0, GRACE_MS + SLACK_MS, 'the download to be cut');
    assert.ok(down > downAtStop, 'the download went on after PostgreSQL stopped');
    // The last answers came at most a second or two before the stop (the guard renews them
    // every 500 ms for keys in use): neither ends much before the grace.
    assert.ok(
      refusedAt - stoppedAt > GRACE_MS - 2_000,
      `refused ${Math.round(refusedAt - stoppedAt)} ms after the stop`,
    );
    assert.ok(
      closedAt - stoppedAt > GRACE_MS - 2_000,
      `cut ${Math.round(closedAt - stoppedAt)} ms after the stop`,
    );
    t.diagnostic(
      `refused ${Math.round(refusedAt - stoppedAt)} ms and cut ${Math.round(closedAt - stoppedAt)} ms ` +
        `after the stop, having moved ${down - downAtStop} bytes meanwhile`,
    );
    assert.equal(net.server.child.exitCode, null, 'the server is still running');
  });

  test('once PostgreSQL is back the key works again', async () => {
    await postgres.start();
    await eventually(
      async () => (await connectOnce()).startsWith('HTTP/1.1 200 '),
      15_000,
      'the key to be admitted again',
    );
  });
});
