/**
 * An account whose credit is used up: its open tunnel is cut within 2 s of the bytes
 * crossing the balance, and every new connection is refused with quota_exhausted over
 * HTTP forwarding, CONNECT and SOCKS5. Real server, real agent, a real download.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';

const CREDIT = 20 * 1024 * 1024;
/** The cut comes at most this long after the client has received the whole credit. */
const CUT_WITHIN_MS = 2_000;

/** Sends `request` on a new connection to the gateway and reads until it closes. */

describe('spent credit refuses new connections and cuts open ones', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      TRIAL_CREDIT_BYTES: String(CREDIT),
      USAGE_FLUSH_INTERVAL_MS: '500',
    });
  });
  after(() => net?.close());

  const authority = () => `127.0.0.1:${net.targetPort}`;
  const basic = () => Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');

  test('an endless download stops soon after the credit is spent', async () => {
    const socket: Socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    let received = 0;
    let spentAt: number | undefined;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (spentAt === undefined && received >= CREDIT) spentAt = performance.now();
    });
    socket.on('error', () => {});
    socket.write(
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n` +
        `GET /drip HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
    );
    await once(socket, 'close');
    const closedAt = performance.now();
    assert.ok(
      spentAt !== undefined,
      `the tunnel closed after ${received} bytes, before the credit`,
    );
    assert.ok(
      closedAt - spentAt <= CUT_WITHIN_MS,
      `cut ${Math.round(closedAt - spentAt)} ms after the credit was spent`,
    );
  });

  test('new connections get quota_exhausted on every protocol', async () => {
    const connectAnswer = await exchangeText(
      net.ports.proxy,
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n`,
    );
    assert.match(connectAnswer, /^HTTP\/1\.1 402 /);
    assert.match(connectAnswer, /\r\nX-IPCola-Error: quota_exhausted\r\n/);
    assert.match(
      connectAnswer,
      /\r\nProxy-Status: ipcola; error=[a-z_]+; details="quota_exhausted"\r\n/,
    );

    const forwardAnswer = await exchangeText(
      net.ports.proxy,
      `GET http://${authority()}/ HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(forwardAnswer, /^HTTP\/1\.1 402 /);
    assert.match(forwardAnswer, /\r\nX-IPCola-Error: quota_exhausted\r\n/);

    await assert.rejects(
      net.socks('-country-de'),
      /Socks5 proxy rejected connection - NotAllowed/,
      'SOCKS5 reply 0x02 (not allowed by ruleset)',
    );
  });

  test('the account shows the balance used up once the usage is flushed', async () => {
    let balance = Number.NaN;
    await eventually(
      async () => {
        const me = (await (await net.api('/v1/me')).json()) as {
          account: { balance_bytes: number };
        };
        balance = me.account.balance_bytes;
        return balance <= 0;
      },
      10_000,
      'the balance to reach zero',
    ).catch(() => assert.fail(`balance ${balance}`));
  });
});
