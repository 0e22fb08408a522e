/**
 * Operators' view of their nodes through the API, with real agents: GET /v1/nodes shows
 * each node online with its exit IPs, the bytes it carried and what that earned; DELETE /v1/nodes/{id}
 * closes its tunnel at once (a download through it ends), takes its exits out of the
 * pool, and its token no longer lets the agent back in.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_PRICES, formatMoney } from '../src/billing/index.ts';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

interface NodeItem {
  id: string;
  kind: string;
  type: string;
  online: boolean;
  exit_ips: string[];
  bytes_carried: number;
  earnings: { currency: string; amount_micro: number; amount: string };
}

/** What a residential node's operator earns per GB on a fresh install, in micro-units. */
const RATE = DEFAULT_PRICES.residential.operator;

describe('deleted nodes leave the pool and lose their tunnel', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork(
      [
        { ip: '127.0.0.12', country: 'de' },
        { ip: '127.0.0.13', country: 'us' },
      ],
      {
        USAGE_FLUSH_INTERVAL_MS: '200',
        BILLING_CURRENCY: 'EUR',
      },
    );
  });
  after(() => net?.close());

  const nodes = async () =>
    ((await (await net.api('/v1/nodes')).json()) as { items: NodeItem[] }).items;
  const authority = () => `127.0.0.1:${net.targetPort}`;
  const basic = (country: string) =>
    Buffer.from(`${net.key.id}-country-${country}:${net.key.secret}`).toString('base64');
  const forward = async (country: string, path = '/') => {
    const socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.write(
      `GET http://${authority()}${path} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic(country)}\r\nConnection: close\r\n\r\n`,
    );
    await once(socket, 'close');
    return Buffer.concat(chunks).toString('latin1');
  };

  test('nodes are listed online with their exit IPs, the bytes they carried and their earnings', async () => {
    const listed = await nodes();
    assert.deepEqual(
      listed.map((node) => [node.kind, node.type, node.online, node.exit_ips]).sort(),
      [
        ['agent', 'residential', true, ['127.0.0.12']],
        ['agent', 'residential', true, ['127.0.0.13']],
      ],
    );
    const reply = await forward('de', '/bytes/123456');
    assert.match(reply, /^HTTP\/1\.1 200 /);
    await eventually(
      async () =>
        (await nodes()).some(
          (node) => node.exit_ips.includes('127.0.0.12') && node.bytes_carried >= reply.length,
        ),
      10_000,
      'the de node to show the bytes it carried',
    );
    const de = (await nodes()).find((node) => node.exit_ips.includes('127.0.0.12'));
    assert.ok(de);
    // Both ways, headers included: the reply and the request line and headers sent.
    assert.ok(de.bytes_carried > reply.length && de.bytes_carried < reply.length + 1000);
    // One hourly row at the hour's operator rate (a flush may land across an hour: then two).
    const earned = de.earnings.amount_micro;
    const exact = Math.floor((de.bytes_carried * RATE) / 1e9);
    assert.ok(earned === exact || earned === exact - 1, `${earned} µ for ${de.bytes_carried} B`);
    assert.equal(de.earnings.currency, 'eur');
    assert.equal(de.earnings.amount, formatMoney(earned));
    assert.ok(earned >= 49, 'at least 49 micro-euros for 123,456 bytes at 0.40 per GB');
    const us = (await nodes()).find((node) => node.exit_ips.includes('127.0.0.13'));
    assert.equal(us?.bytes_carried, 0);
    assert.deepEqual(us?.earnings, { currency: 'eur', amount_micro: 0, amount: '0.00' });
  });

  test('deleting a node ends its streams at once and its exits leave the pool', async () => {
    const de = (await nodes()).find((node) => node.exit_ips.includes('127.0.0.12'));
    assert.ok(de);
    const socket: Socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.write(
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic('de')}\r\n\r\n` +
        `GET /drip HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
    );
    // The cut is a reset ('error' before 'close'): once(socket, 'close') would reject.
    const closed = new Promise<number>((resolve) =>
      socket.once('close', () => resolve(performance.now())),
    );
    let received = 0;
    await new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 64 * 1024) resolve();
      });
    });
    setTimeout(() => socket.destroy(), 10_000).unref();

    const deleted = await net.api(`/v1/nodes/${de.id}`, { method: 'DELETE' });
    assert.equal(deleted.status, 204);
    const deletedAt = performance.now();
    assert.ok((await closed) - deletedAt < 1_000, 'the tunnel through the node ended');

    const refused = await forward('de');
    assert.match(refused, /^HTTP\/1\.1 503 /);
    assert.match(refused, /X-IPCola-Error: no_exit_available/);
    assert.match(await forward('us'), /^HTTP\/1\.1 200 /, 'the other node carries on');
    assert.deepEqual(
      (await nodes()).map((node) => node.exit_ips),
      [['127.0.0.13']],
    );
    assert.equal((await net.api(`/v1/nodes/${de.id}`, { method: 'DELETE' })).status, 404);

    // The agent keeps dialling; its token is refused every time.
    await eventually(
      () => net.server.logs.some((line) => line.msg === 'node upgrade refused'),
      10_000,
      'the deleted node to be refused at the hub',
    );
    assert.match(await forward('de'), /^HTTP\/1\.1 503 /);
  });
});
