/**
 * When the gateway gives up on opening a stream through an exit (the client went away,
 * or the gateway's own open timeout), whatever is still opening below it stops at once:
 * the hub cancels the stream, so the agent stops connecting to the target, and the
 * upstream dialer closes its connection to the supplier's proxy. Without that they would
 * go on until their own, longer timeouts, holding an exit slot for nobody.
 *
 * The gateway and hub modules are wired in this process as main.ts wires them; the exit
 * node is the real agent tunnel client with an egress that never connects (it waits for
 * its cancellation), and the upstream proxy accepts TCP connections and never answers.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connectToHub } from '@ipcola/agent/tunnel';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import type { NodeHello } from '@ipcola/shared/protocol';
import { createGateway, type Gateway } from '../src/gateway/index.ts';
import { createHub, createHubServer, type Hub } from '../src/hub/index.ts';
import { createLogger } from '../src/log/index.ts';
import { createUsageMeter } from '../src/metering/index.ts';
import { createMemoryHotState } from '../src/store/index.ts';
import { createUpstreamDialer } from '../src/upstream/index.ts';

const TOKEN = 'node-token-for-the-cancellation-test';
const KEY = { id: 'key1', secret: 'a-secret-for-the-cancellation-test' };
const UPSTREAM_NODE = 'upstream-1';
/** Far below every layer's own timeout: only a cancellation can end a wait in time. */
const WITHIN_MS = 5_000;
const HELLO: NodeHello = {
  exitIps: ['127.0.0.1'],
  country: 'DE',
  type: 'residential',
  maxStreams: 64,
  agentVersion: '0.1.0-test',
};

const cleanups: Array<() => unknown> = [];

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as { port: number }).port;
}

/** One thing to wait for, resolved from elsewhere. */
function signalled<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The agent's egress: tells when it is asked to connect, and when that was cancelled. */
class WaitingEgress {
  #asked = signalled();
  #cancelled = signalled<unknown>();

  readonly open = (_target: unknown, signal: AbortSignal) => {
    const cancelled = this.#cancelled;
    this.#asked.resolve();
    return new Promise<never>((_resolve, reject) => {
      signal.addEventListener('abort', () => {
        cancelled.resolve(signal.reason);
        reject(signal.reason);
      });
    });
  };

  /** Resolves once an open is pending at the agent; the next one is waited for afresh. */
  async asked(): Promise<{ cancelled: Promise<unknown> }> {
    await this.#asked.promise;
    const cancelled = this.#cancelled.promise;
    this.#asked = signalled();
    this.#cancelled = signalled<unknown>();
    return { cancelled };
  }
}

/** A supplier's proxy that takes connections and never answers. */
class SilentProxy {
  port = 0;
  #accepted = signalled<Socket>();

  async start(): Promise<void> {
    const server = createServer((socket) => {
      socket.on('error', () => {});
      // Read (and drop) the CONNECT request: only a reading socket notices the dialer close.
      socket.resume();
      cleanups.push(() => socket.destroy());
      this.#accepted.resolve(socket);
    });
    this.port = await listen(server);
  }

  /** The next connection the dialer makes, and a promise of its close. */
  async accepted(): Promise<{ closed: Promise<unknown> }> {
    const socket = await this.#accepted.promise;
    this.#accepted = signalled<Socket>();
    return { closed: once(socket, 'close') };
  }
}

function startGateway(
  hub: Hub,
  proxy: SilentProxy,
  openMs?: number,
): Promise<{ http: number; socks: number }> {
  return (async () => {
    const hot = createMemoryHotState();
    const usage = createUsageMeter(hot.counters, { pushIntervalMs: 60_000 });
    const dialer = createUpstreamDialer({
      targetPolicy: createExitPolicy({ allowTargets: ['127.0.0.1/32'] }),
      proxyPolicy: createExitPolicy({ allowTargets: ['127.0.0.1/32'] }),
    });
    const gateway: Gateway = createGateway({
      logger: createLogger('silent'),
      sessions: hot.sessions,
      usage,
      verifyKey: async (id, secret) =>
        id === KEY.id && secret === KEY.secret
          ? { id, accountId: 'account-1', scopes: ['proxy'], maxConcurrency: null }
          : null,
      openStream: (exit, to, signal) =>
        exit.nodeId === UPSTREAM_NODE
          ? dialer.open(
              { protocol: 'http', host: '127.0.0.1', port: proxy.port },
              exit.ip,
              to,
              signal,
            )
          : hub.openStream(exit.nodeId, { host: to.host, port: to.port, exitIp: exit.ip, signal }),
      ...(openMs === undefined ? {} : { timeouts: { openMs } }),
    });
    for (const node of hub.nodes()) {
      gateway.addNodeExits(node.nodeId, [{ ip: '127.0.0.1', type: 'residential', country: 'de' }]);
    }
    gateway.addNodeExits(UPSTREAM_NODE, [{ ip: '127.0.0.1', type: 'datacenter', country: 'us' }]);
    const ports = {
      http: await listen(gateway.httpServer),
      socks: await listen(gateway.socksServer),
    };
    cleanups.push(async () => {
      await gateway.close();
      await usage.close();
      await hot.close();
    });
    return ports;
  })();
}

function authorization(country: string): string {
  const credentials = `${KEY.id}-country-${country}:${KEY.secret}`;
  return `Basic ${Buffer.from(credentials).toString('base64')}`;
}

/** Reads exactly n bytes the gateway sent. */
async function readBytes(socket: Socket, n: number): Promise<Buffer> {
  for (;;) {
    const bytes = socket.read(n) as Buffer | null;
    if (bytes) return bytes;
    await once(socket, 'readable');
  }
}

/** A SOCKS5 client signed in with the key, its CONNECT request sent; the socket stays open. */
async function sendSocksConnect(port: number, country: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(Buffer.from([0x05, 0x01, 0x02]));
  assert.deepEqual([...(await readBytes(socket, 2))], [0x05, 0x02]);
  const user = Buffer.from(`${KEY.id}-country-${country}`);
  const password = Buffer.from(KEY.secret);
  socket.write(
    Buffer.concat([
      Buffer.from([0x01, user.length]),
      user,
      Buffer.from([password.length]),
      password,
    ]),
  );
  assert.deepEqual([...(await readBytes(socket, 2))], [0x01, 0x00]);
  socket.write(Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80]));
  return socket;
}

/** Sends a CONNECT to a target nobody listens on; the socket stays open. */
async function sendConnect(port: number, country: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(
    'CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n' +
      `Proxy-Authorization: ${authorization(country)}\r\n\r\n`,
  );
  return socket;
}

/** The gateway's answer to a CONNECT: status and catalogue code. */
async function answer(socket: Socket): Promise<{ status: number; code: string | undefined }> {
  let text = '';
  for await (const chunk of socket) {
    text += chunk;
    if (text.includes('\r\n\r\n')) break;
  }
  socket.destroy();
  return {
    status: Number(text.split(' ')[1]),
    code: /\r\nX-IPCola-Error: ([a-z_]+)/i.exec(text)?.[1],
  };
}

describe('a gateway that gives up on an exit stops the hub and the upstream dialer too', () => {
  const egress = new WaitingEgress();
  const proxy = new SilentProxy();
  let hub: Hub;
  let patientGateway: { http: number; socks: number };
  let impatientGateway: { http: number; socks: number };

  before(async () => {
    hub = createHub({
      authenticate: async (token) => (token === TOKEN ? { nodeId: 'node-1' } : null),
    });
    const hubPort = await listen(createHubServer(hub));
    cleanups.push(() => hub.close());
    const up = once(hub, 'node-up');
    const agent = connectToHub({
      hub: `127.0.0.1:${hubPort}`,
      token: TOKEN,
      hello: HELLO,
      openEgress: egress.open,
      idleTimeoutMs: 30_000,
    });
    cleanups.push(() => agent.close());
    await up;
    await proxy.start();
    patientGateway = await startGateway(hub, proxy);
    impatientGateway = await startGateway(hub, proxy, 1_000);
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a client that leaves makes the hub cancel the stream at the agent', {
    timeout: WITHIN_MS,
  }, async () => {
    const client = await sendConnect(patientGateway.http, 'de');
    const { cancelled } = await egress.asked();
    client.destroy();
    await cancelled;
  });

  test('a SOCKS5 client that leaves makes the hub cancel the stream at the agent', {
    timeout: WITHIN_MS,
  }, async () => {
    const client = await sendSocksConnect(patientGateway.socks, 'de');
    const { cancelled } = await egress.asked();
    client.destroy();
    await cancelled;
  });

  test('a client that leaves makes the upstream dialer close its proxy connection', {
    timeout: WITHIN_MS,
  }, async () => {
    const client = await sendConnect(patientGateway.http, 'us');
    const { closed } = await proxy.accepted();
    client.destroy();
    await closed;
  });

  test('the open timeout cancels the stream at the agent and answers target_timeout', {
    timeout: WITHIN_MS,
  }, async () => {
    const client = await sendConnect(impatientGateway.http, 'de');
    const { cancelled } = await egress.asked();
    assert.deepEqual(await answer(client), { status: 504, code: 'target_timeout' });
    await cancelled;
  });

  test('the open timeout closes the upstream proxy connection and answers target_timeout', {
    timeout: WITHIN_MS,
  }, async () => {
    const client = await sendConnect(impatientGateway.http, 'us');
    const { closed } = await proxy.accepted();
    assert.deepEqual(await answer(client), { status: 504, code: 'target_timeout' });
    await closed;
  });
});
