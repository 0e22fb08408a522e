/**
 * The gateway's side of an upstream-proxy stream, in process with real sockets: what
 * each answer (or silence) of a SOCKS5 or HTTP proxy becomes in the error catalogue,
 * that the exit policy is applied before any proxy is asked, and that bytes arriving
 * right behind the proxy's answer reach the customer.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createExitPolicy, type LookupAll } from '@ipcola/shared/exit-policy';
import { isIPColaError } from '../../src/errors/index.ts';
import { createUpstreamDialer, type UpstreamProxy } from '../../src/upstream/index.ts';
import { startSocks5Upstream, type UpstreamProxyServer } from '../support/upstream-proxies.ts';

const LOOPBACK = ['127.0.0.1/32'];
const CREDENTIALS = { username: 'supplier', password: 'secret' };

/** A TCP server that answers each connection with `script`; remembers what it received. */
async function fakeProxy(
  script: (socket: Socket, received: () => Buffer) => void,
): Promise<{ port: number; connections: number; received: Buffer[]; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = { port: 0, connections: 0, received: [] as Buffer[] };
  const server: Server = createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    const index = state.received.push(Buffer.alloc(0)) - 1;
    socket.on('data', (chunk) => {
      state.received[index] = Buffer.concat([state.received[index] as Buffer, chunk]);
    });
    script(socket, () => state.received[index] as Buffer);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as { port: number }).port;
  return Object.assign(state, {
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  });
}

/**
 * A SOCKS5 proxy that picks user/password, accepts any credentials, and answers the
 * CONNECT request with `reply` (null: never answers it). `received()` is everything the
 * client sent so far: greeting `05 N methods...`, then `01 ULEN user PLEN pass`.
 */
function socksScript(reply: Buffer | null): (socket: Socket, received: () => Buffer) => void {
  return (socket, received) => {
    let step = 0;
    socket.on('data', () => {
      const bytes = received();
      if (step === 0 && bytes.length >= 2 + (bytes[1] ?? 0)) {
        step = 1;
        socket.write(Buffer.from([0x05, 0x02]));
      } else if (step === 1 && bytes.length > 4) {
        const ulen = bytes[2 + (bytes[1] ?? 0) + 1] ?? 0;
        const auth = bytes.subarray(2 + (bytes[1] ?? 0));
        if (auth.length >= 2 + ulen + 1 && auth.length >= 3 + ulen + (auth[2 + ulen] ?? 0)) {
          step = 2;
          socket.write(Buffer.from([0x01, 0x00]));
        }
      } else if (step === 2) {
        step = 3;
        if (reply) socket.write(reply);
      }
    });
  };
}

const granted = Buffer.from([0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x04, 0x38]);

function socks(port: number, credentials = CREDENTIALS): UpstreamProxy {
  return { protocol: 'socks5', host: '127.0.0.1', port, credentials };
}
function http(port: number): UpstreamProxy {
  return { protocol: 'http', host: '127.0.0.1', port, credentials: CREDENTIALS };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    const stream = (await promise) as Socket;
    stream.destroy();
  } catch (error) {
    assert.ok(isIPColaError(error), `expected a catalogue error, got ${error}`);
    return error.code;
  }
  return 'opened';
}

describe('the upstream dialer', () => {
  let echo: Server;
  let echoPort: number;
  let upstream: UpstreamProxyServer;
  const dialer = createUpstreamDialer({
    targetPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
    proxyPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
    connectTimeoutMs: 400,
  });
  const target = () => ({ host: '127.0.0.1', port: echoPort });

  before(async () => {
    echo = createServer((socket) => socket.pipe(socket));
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    echoPort = (echo.address() as { port: number }).port;
    upstream = await startSocks5Upstream(CREDENTIALS, '127.0.0.16');
  });
  after(async () => {
    await upstream.close();
    echo.close();
  });

  test('opens a stream that carries bytes both ways through a real SOCKS5 server', async () => {
    const stream = await dialer.open(socks(upstream.port), '127.0.0.16', target());
    stream.write('ping');
    const [chunk] = await once(stream, 'data');
    assert.equal(String(chunk), 'ping');
    stream.destroy();
  });

  test('the proxy failing us is exit_failed: refused, wrong credentials, mute, wrong protocol', async () => {
    const mute = await fakeProxy(() => {});
    const http404 = await fakeProxy((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const closed = await fakeProxy(() => {});
    await closed.close();
    try {
      const wrong = socks(upstream.port, { ...CREDENTIALS, password: 'nope' });
      assert.equal(await codeOf(dialer.open(wrong, '127.0.0.16', target())), 'exit_failed');
      assert.equal(
        await codeOf(dialer.open(socks(closed.port), '127.0.0.16', target())),
        'exit_failed',
      );
      assert.equal(
        await codeOf(dialer.open(socks(mute.port), '127.0.0.16', target())),
        'exit_failed',
      );
      assert.equal(
        await codeOf(dialer.open(socks(http404.port), '127.0.0.16', target())),
        'exit_failed',
      );
    } finally {
      await Promise.all([mute.close(), http404.close()]);
    }
  });

  test('SOCKS5 replies about the target map to target codes; a general failure is the exit', async () => {
    const cases: Array<[number, string]> = [
      [0x05, 'target_unreachable'],
      [0x04, 'target_unreachable'],
      [0x02, 'target_unreachable'],
      [0x06, 'target_timeout'],
      [0x01, 'exit_failed'],
      [0x07, 'exit_failed'],
    ];
    for (const [rep, code] of cases) {
      const proxy = await fakeProxy(socksScript(Buffer.from([0x05, rep, 0, 1, 0, 0, 0, 0, 0, 0])));
      try {
        assert.equal(await codeOf(dialer.open(socks(proxy.port), '127.0.0.16', target())), code);
      } finally {
        await proxy.close();
      }
    }
    // Authenticated, then no answer to CONNECT: the proxy is still trying the target.
    const slow = await fakeProxy(socksScript(null));
    try {
      assert.equal(
        await codeOf(dialer.open(socks(slow.port), '127.0.0.16', target())),
        'target_timeout',
      );
    } finally {
      await slow.close();
    }
  });

  test('HTTP CONNECT answers map to codes; silence is a target timeout', async () => {
    const cases: Array<[string | null, string]> = [
      ['407 Proxy Authentication Required', 'exit_failed'],
      ['503 Service Unavailable', 'exit_failed'],
      ['502 Bad Gateway', 'target_unreachable'],
      ['594 Connection Refused', 'target_unreachable'],
      ['504 Gateway Timeout', 'target_timeout'],
      [null, 'target_timeout'],
    ];
    for (const [status, code] of cases) {
      const proxy = await fakeProxy((socket) => {
        socket.once('data', () => {
          if (status) socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\n\r\n`);
        });
      });
      try {
        assert.equal(await codeOf(dialer.open(http(proxy.port), '127.0.0.15', target())), code);
        const request = String(proxy.received[0]);
        assert.match(request, new RegExp(`^CONNECT 127\\.0\\.0\\.1:${echoPort} HTTP/1\\.1\\r\\n`));
        assert.match(request, /\r\nProxy-Authorization: Basic c3VwcGxpZXI6c2VjcmV0\r\n/);
      } finally {
        await proxy.close();
      }
    }
  });

  test('bytes the target sent right behind the proxy answer are the first bytes of the stream', async () => {
    const socksProxy = await fakeProxy(
      socksScript(Buffer.concat([granted, Buffer.from('banner')])),
    );
    const httpProxy = await fakeProxy((socket) =>
      socket.once('data', () => socket.write('HTTP/1.1 200 Connection established\r\n\r\nbanner')),
    );
    try {
      for (const proxy of [socks(socksProxy.port), http(httpProxy.port)]) {
        const stream = await dialer.open(proxy, '127.0.0.1', target());
        const [chunk] = await once(stream, 'data');
        assert.equal(String(chunk), 'banner', proxy.protocol);
        stream.destroy();
      }
    } finally {
      await Promise.all([socksProxy.close(), httpProxy.close()]);
    }
  });

  test('a name is resolved and checked here, and the proxy is asked for the address only', async () => {
    const proxy = await fakeProxy(socksScript(granted));
    const lookup =
      (answers: string[]): LookupAll =>
      async () =>
        answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    const through = (answers: string[]) =>
      createUpstreamDialer({
        targetPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
        proxyPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
        lookup: lookup(answers),
        connectTimeoutMs: 400,
      });
    try {
      const stream = await through(['127.0.0.1']).open(socks(proxy.port), '127.0.0.16', {
        host: 'target.example',
        port: 8080,
      });
      stream.destroy();
      const request = (proxy.received[0] as Buffer).subarray(-10);
      assert.deepEqual([...request], [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x1f, 0x90]);

      // One private answer among public ones is a rebinding trick: the whole name is refused.
      const before = proxy.connections;
      for (const answers of [['127.0.0.1', '10.0.0.1'], ['169.254.169.254']]) {
        const opening = through(answers).open(socks(proxy.port), '127.0.0.16', {
          host: 'target.example',
          port: 80,
        });
        assert.equal(await codeOf(opening), 'target_forbidden');
      }
      assert.equal(proxy.connections, before, 'the proxy was never asked');

      // The proxy's own address is judged too (here: a name that resolves to a private one).
      const named = { ...socks(proxy.port), host: 'proxy.example' };
      const privateProxy = createUpstreamDialer({
        targetPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
        proxyPolicy: createExitPolicy({ allowTargets: LOOPBACK }),
        lookup: async (name) =>
          name === 'proxy.example'
            ? [{ address: '10.9.9.9', family: 4 }]
            : [{ address: '127.0.0.1', family: 4 }],
      });
      assert.equal(await codeOf(privateProxy.open(named, '127.0.0.16', target())), 'exit_failed');
    } finally {
      await proxy.close();
    }
  });
});
