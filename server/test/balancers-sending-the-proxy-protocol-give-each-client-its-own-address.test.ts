/**
 * Behind a TCP balancer every customer arrives from the balancer's address. With
 * PROXY_PROTOCOL_FROM naming the balancer, the PROXY header it sends (HAProxy's
 * `send-proxy` / `send-proxy-v2`) gives each connection its client's address back: one
 * client's failed sign-ins no longer lock every customer out, and password-less ranges
 * see the real client. Nobody else can claim an address that way. Here the "balancer"
 * is a raw socket bound to 127.0.0.50 writing the header itself; deploy/test runs the
 * same through a real HAProxy.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const BALANCER = '127.0.0.50';
const LIMIT = 3;

/** PROXY protocol version 2, PROXY command, TCP over IPv4, from `client`. */
function headerV2(client: string, port: number): Buffer {
  const block = Buffer.alloc(12);
  Buffer.from(client.split('.').map(Number)).copy(block, 0);
  Buffer.from([127, 0, 0, 1]).copy(block, 4);
  block.writeUInt16BE(port, 8);
  block.writeUInt16BE(8000, 10);
  const head = Buffer.from([0x21, 0x11, 0x00, block.length]);
  return Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), head, block]);
}

const headerV1 = (client: string, port = 40000) =>
  Buffer.from(`PROXY TCP4 ${client} 127.0.0.1 ${port} 8000\r\n`);

describe('balancers sending the PROXY protocol give each client its own address', () => {
  let net: ProxyNetwork;
  let passwordless: { id: string; secret: string };

  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      PROXY_PROTOCOL_FROM: `${BALANCER}/32`,
      AUTH_FAILURE_LIMIT: String(LIMIT),
      PROXY_HANDSHAKE_TIMEOUT_MS: '1500',
      USAGE_FLUSH_INTERVAL_MS: '200',
    });
    const created = await net.api('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ name: 'office', passwordless_cidrs: ['198.51.100.0/24'] }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    passwordless = (await created.json()) as { id: string; secret: string };
  });
  after(() => net?.close());

  /** Opens a connection to `port` from `from`, sends `bytes`, and collects what comes back. */
  async function open(port: number, from: string, bytes: Buffer) {
    const socket = connect({ port, host: '127.0.0.1', localAddress: from });
    socket.on('error', () => {});
    await once(socket, 'connect');
    let seen = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
    });
    const closed = once(socket, 'close');
    socket.write(bytes);
    return { socket, seen: () => seen, closed };
  }

  const connectRequest = (auth: string | null) => {
    const authority = `127.0.0.1:${net.targetPort}`;
    const header = auth
      ? `Proxy-Authorization: Basic ${Buffer.from(auth).toString('base64')}\r\n`
      : '';
    return Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${header}\r\n`);
  };

  /** Status and refusal code of a CONNECT sent through the balancer for `client`. */
  async function connectFor(
    client: string,
    auth: string | null,
    header: (client: string, port: number) => Buffer = headerV1,
  ) {
    const { socket, seen } = await open(
      net.ports.proxy,
      BALANCER,
      Buffer.concat([header(client, 40000), connectRequest(auth)]),
    );
    try {
      await eventually(() => seen().includes('\r\n\r\n'), 10_000, 'the CONNECT answer');
      const head = seen().toString('latin1');
      return `${head.split(' ')[1]} ${/X-IPCola-Error: (\S+)/.exec(head)?.[1] ?? ''}`.trim();
    } finally {
      socket.destroy();
    }
  }

  test("one client's failed sign-ins through the balancer lock out that client only", async () => {
    const wrong = `${net.key.id}:wrong`;
    for (let i = 0; i < LIMIT; i++) {
      assert.equal(await connectFor('203.0.113.7', wrong), '407 auth_failed');
    }
    assert.equal(await connectFor('203.0.113.7', wrong), '429 rate_limited');
    assert.equal(
      await connectFor('203.0.113.7', `${net.key.id}:${net.key.secret}`),
      '429 rate_limited',
    );
    // Another customer behind the same balancer, and the same one over version 2.
    assert.equal(await connectFor('203.0.113.8', `${net.key.id}:${net.key.secret}`), '200');
    assert.equal(
      await connectFor('203.0.113.7', `${net.key.id}:${net.key.secret}`, headerV2),
      '429 rate_limited',
    );
  });

  test('a password-less range is judged on the client the header names', async () => {
    assert.equal(await connectFor('198.51.100.20', `${passwordless.id}:`), '200');
    assert.equal(await connectFor('198.51.100.21', null, headerV2), '200');
    assert.equal(await connectFor('192.0.2.20', `${passwordless.id}:`), '407 auth_failed');
  });

  test('a tunnel through the balancer carries bytes both ways after the header', async () => {
    const { socket, seen } = await open(
      net.ports.proxy,
      BALANCER,
      Buffer.concat([
        headerV2('203.0.113.9', 41000),
        connectRequest(`${net.key.id}:${net.key.secret}`),
        // Pipelined right behind the CONNECT, in the same packet as the header.
        Buffer.from(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
      ]),
    );
    try {
      await eventually(() => seen().toString().endsWith('127.0.0.12'), 10_000, 'the answer');
      assert.match(seen().toString(), /^HTTP\/1\.1 200 /);
    } finally {
      socket.destroy();
    }
  });

  test("the header's bytes are the balancer's: the key is billed exactly what its client moved", async () => {
    const created = await net.api('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ name: 'metered' }),
    });
    const metered = (await created.json()) as { id: string; secret: string };
    const sent = Buffer.concat([
      connectRequest(`${metered.id}:${metered.secret}`),
      Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'),
    ]);
    const { seen, closed } = await open(
      net.ports.proxy,
      BALANCER,
      Buffer.concat([headerV2('203.0.113.11', 43000), sent]),
    );
    // The target closes after its answer, and the tunnel with it.
    await closed;
    assert.ok(seen().toString().endsWith('127.0.0.12'));
    let usage: { bytes_up: number; bytes_down: number; requests: number } | undefined;
    await eventually(
      async () => {
        const answer = await net.api(`/v1/usage?key_id=${metered.id}`);
        usage = ((await answer.json()) as { totals: typeof usage }).totals;
        return usage?.requests === 1;
      },
      10_000,
      'the tunnel in the usage report',
    );
    assert.deepEqual(usage, { bytes_up: sent.length, bytes_down: seen().length, requests: 1 });
  });

  test('SOCKS5 through the balancer sees the client too', async () => {
    const user = net.key.id;
    const auth = Buffer.concat([
      Buffer.from([0x01, user.length]),
      Buffer.from(user),
      Buffer.from([net.key.secret.length]),
      Buffer.from(net.key.secret),
    ]);
    const request = Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 0]);
    request.writeUInt16BE(net.targetPort, 8);
    const { socket, seen } = await open(
      net.ports.socks,
      BALANCER,
      Buffer.concat([headerV1('198.51.100.30'), Buffer.from([0x05, 0x01, 0x02]), auth, request]),
    );
    try {
      // Greeting answer (2), sub-negotiation answer (2), reply (10).
      await eventually(() => seen().length >= 14, 10_000, 'the SOCKS5 reply');
      assert.deepEqual([...seen().subarray(0, 4)], [0x05, 0x02, 0x01, 0x00]);
      assert.equal(seen()[5], 0x00, 'succeeded');
    } finally {
      socket.destroy();
    }
    // Password-less over SOCKS5 (no-auth method), judged on the header's client.
    const anonymous = await open(
      net.ports.socks,
      BALANCER,
      Buffer.concat([headerV2('198.51.100.31', 42000), Buffer.from([0x05, 0x01, 0x00]), request]),
    );
    try {
      await eventually(() => anonymous.seen().length >= 12, 10_000, 'the SOCKS5 reply');
      assert.deepEqual([...anonymous.seen().subarray(0, 2)], [0x05, 0x00]);
      assert.equal(anonymous.seen()[3], 0x00, 'succeeded');
    } finally {
      anonymous.socket.destroy();
    }
  });

  test('a client that is not the balancer cannot claim an address with a header', async () => {
    // 127.0.0.1 is not in PROXY_PROTOCOL_FROM: its header is just bytes that are not HTTP.
    const { seen, closed } = await open(
      net.ports.proxy,
      '127.0.0.1',
      Buffer.concat([headerV1('198.51.100.20'), connectRequest(`${passwordless.id}:`)]),
    );
    await closed;
    assert.match(seen().toString('latin1'), /^HTTP\/1\.1 400 /);
    const socks = await open(net.ports.socks, '127.0.0.1', headerV2('198.51.100.20', 1));
    await socks.closed;
    assert.ok(!socks.seen().includes(Buffer.from([0x05, 0x00])), 'no SOCKS5 method accepted');
  });

  test("the balancer's connections without a good header are closed, and the server goes on", async () => {
    const garbage = await open(net.ports.proxy, BALANCER, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await garbage.closed;
    assert.equal(garbage.seen().length, 0, 'nothing answered before a header');
    const silent = await open(net.ports.socks, BALANCER, Buffer.alloc(0));
    await silent.closed;
    assert.equal(silent.seen().length, 0);
    assert.equal(await connectFor('203.0.113.10', `${net.key.id}:${net.key.secret}`), '200');
  });
});
