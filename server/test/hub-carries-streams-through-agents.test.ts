import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import {
  type AddressInfo,
  connect,
  createServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import {
  type ConnectOptions,
  connectToHub,
  type OpenEgress,
  type TunnelClient,
} from '@ipcola/agent/tunnel';
import { type NodeHello, STREAM_WINDOW_BYTES } from '@ipcola/shared/protocol';
import { isTunnelError } from '@ipcola/shared/tunnel-errors';
import {
  type ConnectedNode,
  createHub,
  createHubServer,
  type Hub,
  type NodeDownEvent,
} from '../src/hub/index.ts';

const MB = 1024 * 1024;
const NODE_ID = 'node-1';
const TOKENS: Record<string, string> = { 'good-token': NODE_ID, 'other-token': 'node-2' };
const HELLO: NodeHello = {
  exitIps: ['127.0.0.1'],
  country: 'DE',
  city: 'berlin',
  asn: 64_512,
  type: 'residential',
  maxStreams: 256,
  agentVersion: '0.1.0-test',
};

/** Self-signed for 127.0.0.1, valid 2000–2100. Test-only. */
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBgDCCASagAwIBAgIBATAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA9pcGNvbGEt
dGVzdC1odWIwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBoxGDAW
BgNVBAMMD2lwY29sYS10ZXN0LWh1YjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BFkNUEkqpY2MRnJr9wJqZaHu/Zi5quO3xDhhXR7stu9dTV9g03cmQI41BPby8OS8
P5CEGguFK6f5W9SW6V8JDpOjWzBZMA8GA1UdEwEB/wQFMAMBAf8wGgYDVR0RBBMw
EYcEfwAAAYIJbG9jYWxob3N0MAsGA1UdDwQEAwIChDAdBgNVHQ4EFgQUwJ2YepUm
iD9pDmKuL/R68auTfoQwCgYIKoZIzj0EAwIDSAAwRQIgXIjWf0pDJ4lhPwyts+1O
X722ljQqN0OmHckybOgvHUUCIQDMHbtuo4k/tDcXPfpho2SbF8ZBowk6S+tTGwqe
sDOwWw==
-----END CERTIFICATE-----
`;
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPa+Uhy4Y/Y7kPyMd
i40r9HsMXFQim6cYRL4TBA6vzVahRANCAARZDVBJKqWNjEZya/cCamWh7v2Yuarj
t8Q4YV0e7LbvXU1fYNN3JkCONQT28vDkvD+QhBoLhSun+VvUlulfCQ6T
-----END PRIVATE KEY-----
`;

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface RunningHub {
  readonly hub: Hub;
  readonly server: Server;
  readonly port: number;
  stop(): Promise<void>;
}

/** Token checks the hubs made, all tests together. */
let tokenChecks = 0;

async function startHub(
  options: {
    port?: number;
    pingIntervalMs?: number;
    pingTimeoutMs?: number;
    tls?: boolean;
    worker?: { id: number; count: number };
  } = {},
): Promise<RunningHub> {
  const hub = createHub({
    authenticate: async (token) => {
      tokenChecks += 1;
      return TOKENS[token] ? { nodeId: TOKENS[token] } : null;
    },
    ...(options.worker ? { worker: options.worker } : {}),
    pingIntervalMs: options.pingIntervalMs ?? 200,
    pingTimeoutMs: options.pingTimeoutMs ?? 2_000,
  });
  const server = createHubServer(hub, options.tls ? { tls: { cert: TLS_CERT, key: TLS_KEY } } : {});
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await hub.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return stopped;
  };
  cleanups.push(stop);
  return { hub, server, port: (server.address() as AddressInfo).port, stop };
}

/** A TCP server on 127.0.0.1:0, closed after the test. */
async function listenTcp(onConnection: (socket: Socket) => void): Promise<number> {
  const server: NetServer = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    onConnection(socket);
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** Echoes everything, then ends when the client ends. */
function startEcho(): Promise<number> {
  return listenTcp((socket) => socket.pipe(socket));
}

/** The fake egress the tests give the agent: a plain TCP connection on loopback. */
const tcpEgress: OpenEgress = async ({ host, port }) => {
  const socket = connect({ host, port, allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
};

function startAgent(hubPort: number, overrides: Partial<ConnectOptions> = {}): TunnelClient {
  const agent = connectToHub({
    hub: `127.0.0.1:${hubPort}`,
    token: 'good-token',
    hello: HELLO,
    openEgress: tcpEgress,
    idleTimeoutMs: 30_000,
    pingIntervalMs: 200,
    pingTimeoutMs: 5_000,
    reconnect: { initialMs: 20, maxMs: 200, stableAfterMs: 60_000, refusedRetryMs: 60_000 },
    ...overrides,
  });
  cleanups.push(() => agent.close());
  return agent;
}

async function nextNodeUp(hub: Hub): Promise<ConnectedNode> {
  const [node] = (await once(hub, 'node-up')) as [ConnectedNode];
  return node;
}

async function nextNodeDown(hub: Hub): Promise<NodeDownEvent> {
  const [event] = (await once(hub, 'node-down')) as [NodeDownEvent];
  return event;
}

/** Sends `payload` through a stream, half-closes, and returns what came back. */
async function roundTrip(stream: Duplex, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = once(stream, 'end');
  stream.end(payload);
  await ended;
  return Buffer.concat(chunks);
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Expects `promise` to reject with a tunnel error carrying `code`. */
async function assertTunnelCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isTunnelError(error), `expected a TunnelError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

/** Polls `condition` once per event-loop turn, a bounded number of times. */
async function eventually(condition: () => boolean, what: string, turns = 200_000): Promise<void> {
  for (let turn = 0; turn < turns; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`never happened: ${what}`);
}

function echoTarget(port: number) {
  return { host: '127.0.0.1', port, exitIp: '127.0.0.1' };
}

describe('a node joins the hub', () => {
  test('with a good token the hub sees node-up with the hello, normalised', async () => {
    const { hub, port } = await startHub();
    const up = nextNodeUp(hub);
    const agent = startAgent(port);
    const [node, [connected]] = await Promise.all([up, once(agent, 'connected')]);
    assert.equal(node.nodeId, NODE_ID);
    assert.deepEqual(node.hello, { ...HELLO, country: 'de' });
    assert.equal(node.remoteAddress, '127.0.0.1');
    assert.deepEqual(connected, { nodeId: NODE_ID, hub: `127.0.0.1:${port}` });
    assert.equal(agent.state, 'connected');
    assert.deepEqual(
      hub.nodes().map((n) => n.nodeId),
      [NODE_ID],
    );
  });

  test('over TLS as well', async () => {
    const { hub, port } = await startHub({ tls: true });
    const up = nextNodeUp(hub);
    startAgent(port, { tls: { ca: TLS_CERT } });
    await up;
    const echoPort = await startEcho();
    const stream = await hub.openStream(NODE_ID, echoTarget(echoPort));
    const payload = randomBytes(2 * MB);
    assert.ok((await roundTrip(stream, payload)).equals(payload));
  });

  test('a node that connects again replaces its previous session', async () => {
    const { hub, port } = await startHub();
    const firstUp = nextNodeUp(hub);
    // The first agent would come back quickly after being replaced; keep it away.
    const first = startAgent(port, {
      reconnect: {
        initialMs: 60_000,
        maxMs: 60_000,
        stableAfterMs: 60_000,
        refusedRetryMs: 60_000,
      },
    });
    await firstUp;
    const down = nextNodeDown(hub);
    const secondUp = nextNodeUp(hub);
    const firstLost = once(first, 'disconnected');
    startAgent(port);
    assert.deepEqual(await down, { nodeId: NODE_ID, reason: 'replaced' });
    await secondUp;
    await firstLost;
    assert.equal(hub.nodes().length, 1);
  });
});

describe('a hub that is one worker of several', () => {
  test('it tells the agent which worker it is; a dial naming it as held is refused before any token check, and the tunnel held stays', async () => {
    // One hub says it is worker 2 of 3: every dial for the other two lands on it again.
    const { hub, server, port } = await startHub({ worker: { id: 2, count: 3 } });
    let dials = 0;
    server.on('upgrade', () => {
      dials += 1;
    });
    const up = nextNodeUp(hub);
    let down = 0;
    hub.on('node-down', () => {
      down += 1;
    });
    const checksBefore = tokenChecks;
    const agent = startAgent(port);
    await up;
    await eventually(() => dials >= 1 + 9, 'the agent to dial for the workers it misses');
    assert.equal(tokenChecks - checksBefore, 1, 'only the first dial had its token checked');
    assert.equal(agent.tunnels, 1);
    assert.equal(down, 0, 'the tunnel held was never replaced');
    assert.deepEqual(
      hub.nodes().map((node) => node.nodeId),
      [NODE_ID],
    );
  });
});

// v2 agents get the multiplexer; agents that offer only v1 (those in the field before
// it) get HTTP/2 as before, and must see no difference.
for (const [version, protocols] of [
  ['v2, the multiplexer', undefined],
  ['v1, HTTP/2', ['h2'] as const],
] as const) {
  const agentFor = (port: number, overrides: Partial<ConnectOptions> = {}) =>
    startAgent(port, { ...(protocols ? { protocols } : {}), ...overrides });

  describe(`streams through a node (${version})`, () => {
    test('the hub speaks the newest protocol the agent offers', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      const node = await up;
      assert.equal(node.protocol, protocols ? 'h2' : 'mux');
    });

    test('an echo server answers through the tunnel, bytes intact both ways', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      const echoPort = await startEcho();
      const stream = await hub.openStream(NODE_ID, {
        ...echoTarget(echoPort),
        streamLabel: 'req-1',
      });
      const payload = randomBytes(8 * MB + 5);
      assert.ok((await roundTrip(stream, payload)).equals(payload));
    });

    test('100 concurrent streams on one node all echo their own bytes', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      const echoPort = await startEcho();
      const results = await Promise.all(
        Array.from({ length: 100 }, async (_, index) => {
          const payload = randomBytes(64 * 1024 + index);
          const stream = await hub.openStream(NODE_ID, echoTarget(echoPort));
          return (await roundTrip(stream, payload)).equals(payload);
        }),
      );
      assert.equal(results.filter(Boolean).length, 100);
      await eventually(() => hub.node(NODE_ID)?.activeStreams === 0, 'all streams closed');
    });

    test('the half-close travels: the target sees EOF and can still answer', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      const targetPort = await listenTcp((socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.on('end', () => socket.end(`got ${Buffer.concat(chunks).length} bytes then EOF`));
      });
      const stream = await hub.openStream(NODE_ID, echoTarget(targetPort));
      const answer = await roundTrip(stream, Buffer.alloc(1000));
      assert.equal(answer.toString(), 'got 1000 bytes then EOF');
    });

    test('a reset at the target reaches the hub as an abort, never as a clean end', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      // The reset comes a round trip after the data: libuv reports a RST that arrives in
      // the same read as data as a plain EOF, which no JavaScript can tell apart.
      const targetPort = await listenTcp((socket) => {
        socket.once('data', () => {
          socket.write('partial answer');
          socket.once('data', () => socket.resetAndDestroy());
        });
      });
      const stream = await hub.openStream(NODE_ID, echoTarget(targetPort));
      stream.write('go');
      const chunks: Buffer[] = [];
      let ended = false;
      stream.once('data', () => stream.write('ack'));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        ended = true;
      });
      const failed = new Promise<unknown>((resolve) => stream.once('error', resolve));
      await new Promise<void>((resolve) => stream.once('close', () => resolve()));
      assert.equal(Buffer.concat(chunks).toString(), 'partial answer');
      assert.equal(ended, false, 'no clean EOF after a reset');
      assert.match(
        String(await failed),
        protocols ? /NGHTTP2_INTERNAL_ERROR/ : /the peer aborted the stream/,
      );
    });

    test('a stream the hub destroys resets the target connection', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      const targetError = deferred<NodeJS.ErrnoException>();
      const targetPort = await listenTcp((socket) => {
        socket.on('error', targetError.resolve);
        socket.once('data', () => socket.write('hello'));
      });
      const stream = await hub.openStream(NODE_ID, echoTarget(targetPort));
      stream.write('go');
      await once(stream, 'data');
      stream.destroy();
      assert.equal((await targetError.promise).code, 'ECONNRESET');
    });

    test("the agent's egress refusal arrives as an error value with its code", async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      const refusals: Record<number, unknown> = {
        1: Object.assign(new Error('private address'), { code: 'target_forbidden' }),
        2: Object.assign(new Error('no answer'), { code: 'target_timeout' }),
        3: Object.assign(new Error('NXDOMAIN'), { code: 'target_unreachable' }),
        4: new Error('something unexpected'),
      };
      agentFor(port, {
        openEgress: async ({ port: targetPort }) => {
          throw refusals[targetPort];
        },
      });
      await up;
      const open = (targetPort: number) =>
        hub.openStream(NODE_ID, { host: 'example.com', port: targetPort, exitIp: '127.0.0.1' });
      await assertTunnelCode(open(1), 'target_forbidden');
      await assertTunnelCode(open(2), 'target_timeout');
      await assertTunnelCode(open(3), 'target_unreachable');
      await assertTunnelCode(open(4), 'exit_failed');
    });

    test('a node at its announced capacity refuses more streams at once', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port, { hello: { ...HELLO, maxStreams: 2 } });
      await up;
      const echoPort = await startEcho();
      const held = [
        await hub.openStream(NODE_ID, echoTarget(echoPort)),
        await hub.openStream(NODE_ID, echoTarget(echoPort)),
      ];
      assert.equal(hub.node(NODE_ID)?.activeStreams, 2);
      await assertTunnelCode(hub.openStream(NODE_ID, echoTarget(echoPort)), 'exit_failed');
      const first = held[0] as Duplex;
      const payload = Buffer.from('still carried');
      assert.ok((await roundTrip(first, payload)).equals(payload));
      await eventually(() => hub.node(NODE_ID)?.activeStreams === 1, 'one stream closed');
      const again = await hub.openStream(NODE_ID, echoTarget(echoPort));
      assert.ok((await roundTrip(again, payload)).equals(payload));
      (held[1] as Duplex).destroy();
    });

    test('unknown nodes and exit IPs the node did not announce are exit_failed', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      agentFor(port);
      await up;
      await assertTunnelCode(hub.openStream('nobody', echoTarget(1)), 'exit_failed');
      await assertTunnelCode(
        hub.openStream(NODE_ID, { host: '127.0.0.1', port: 1, exitIp: '192.0.2.1' }),
        'exit_failed',
      );
    });

    test('a slow reader at the hub stops the agent reading the target', async () => {
      const { hub, port } = await startHub();
      const up = nextNodeUp(hub);
      const total = 64 * MB;
      let written = 0;
      const sent = createHash('sha256');
      const targetPort = await listenTcp(async (socket) => {
        while (written < total) {
          const chunk = randomBytes(256 * 1024);
          sent.update(chunk);
          written += chunk.length;
          if (!socket.write(chunk)) await once(socket, 'drain');
        }
        socket.end();
      });
      let egressPaused = 0;
      agentFor(port, {
        openEgress: async (target, signal) => {
          const socket = (await tcpEgress(target, signal)) as Socket;
          const pause = socket.pause.bind(socket);
          socket.pause = () => {
            egressPaused += 1;
            return pause();
          };
          return socket;
        },
      });
      await up;
      const stream = await hub.openStream(NODE_ID, echoTarget(targetPort));
      stream.end();
      // Nobody reads the stream: the node must run out of stream window and stop.
      const http2Stream = stream as Duplex & { state?: { localWindowSize?: number } };
      const windowUsedUp = () =>
        http2Stream.state
          ? http2Stream.state.localWindowSize === 0
          : stream.readableLength === STREAM_WINDOW_BYTES;
      await eventually(
        () => windowUsedUp() && egressPaused > 0,
        'the stream window is used up and the agent paused the target',
      );
      assert.ok(
        stream.readableLength <= STREAM_WINDOW_BYTES + 64 * 1024,
        `${stream.readableLength} bytes held at the hub`,
      );
      assert.ok(written < total, 'the target could not write everything');

      const received = createHash('sha256');
      let receivedBytes = 0;
      stream.on('data', (chunk: Buffer) => {
        received.update(chunk);
        receivedBytes += chunk.length;
      });
      await once(stream, 'end');
      assert.equal(receivedBytes, total);
      assert.equal(received.digest('hex'), sent.digest('hex'));
    });
  });
}

describe('nodes that go away', () => {
  test('killing the agent socket: node-down, and a pending openStream rejects with exit_failed', async () => {
    const { hub, port } = await startHub();
    const up = nextNodeUp(hub);
    let agentSocket: Socket | undefined;
    const egressRequested = deferred();
    const egressCancelled = deferred<unknown>();
    startAgent(port, {
      createConnection: ({ host, port: hubPort }) => {
        agentSocket = connect({ host, port: hubPort });
        return agentSocket;
      },
      openEgress: (_target, signal) => {
        egressRequested.resolve();
        return new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            egressCancelled.resolve(signal.reason);
            reject(signal.reason);
          });
        });
      },
      reconnect: {
        initialMs: 60_000,
        maxMs: 60_000,
        stableAfterMs: 60_000,
        refusedRetryMs: 60_000,
      },
    });
    await up;
    const pending = hub.openStream(NODE_ID, echoTarget(1));
    await egressRequested.promise;
    const down = nextNodeDown(hub);
    assert.ok(agentSocket);
    agentSocket.destroy();
    await assertTunnelCode(pending, 'exit_failed');
    assert.equal((await down).nodeId, NODE_ID);
    assert.equal(hub.nodes().length, 0);
    await egressCancelled.promise;
  });

  test('a frozen agent is declared dead by PING within a few seconds', async () => {
    const { hub, port } = await startHub({ pingIntervalMs: 100, pingTimeoutMs: 500 });
    // A relay between agent and hub that can stop forwarding: a black-holed network.
    let frozen = false;
    const relayed: Socket[] = [];
    const relayPort = await listenTcp((agentSide) => {
      const hubSide = connect({ host: '127.0.0.1', port });
      hubSide.on('error', () => {});
      relayed.push(agentSide, hubSide);
      for (const [from, to] of [
        [agentSide, hubSide],
        [hubSide, agentSide],
      ] as const) {
        from.on('data', (chunk: Buffer) => {
          if (!frozen) to.write(chunk);
        });
        from.on('close', () => to.destroy());
      }
    });
    cleanups.push(() => {
      for (const socket of relayed) socket.destroy();
    });
    const up = nextNodeUp(hub);
    startAgent(relayPort, { pingTimeoutMs: 60_000 });
    await up;
    const down = nextNodeDown(hub);
    frozen = true;
    const started = performance.now();
    const event = await down;
    const tookMs = performance.now() - started;
    assert.equal(event.reason, 'ping_timeout');
    assert.ok(tookMs < 3_000, `declared dead after ${Math.round(tookMs)} ms`);
  });

  test('after a hub restart on the same port the agent comes back by itself', async () => {
    const first = await startHub();
    const up = nextNodeUp(first.hub);
    const agent = startAgent(first.port);
    await up;
    const lost = once(agent, 'disconnected');
    await first.stop();
    await lost;
    const second = await startHub({ port: first.port });
    await nextNodeUp(second.hub);
    const echoPort = await startEcho();
    const stream = await second.hub.openStream(NODE_ID, echoTarget(echoPort));
    const payload = randomBytes(MB);
    assert.ok((await roundTrip(stream, payload)).equals(payload));
  });

  test('drain lets an open stream finish, refuses new ones, then closes', async () => {
    const { hub, port } = await startHub();
    const up = nextNodeUp(hub);
    const agent = startAgent(port);
    await up;
    const echoPort = await startEcho();
    const stream = await hub.openStream(NODE_ID, echoTarget(echoPort));
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.write('before drain, ');
    await eventually(() => chunks.length > 0, 'the first echo');

    const down = nextNodeDown(hub);
    let drained = false;
    const draining = agent.drain(10_000).then(() => {
      drained = true;
    });
    assert.equal((await down).reason, 'draining');
    await assertTunnelCode(hub.openStream(NODE_ID, echoTarget(echoPort)), 'exit_failed');
    assert.equal(drained, false, 'drain waits for the open stream');

    const ended = once(stream, 'end');
    stream.end('after drain');
    await ended;
    assert.equal(Buffer.concat(chunks).toString(), 'before drain, after drain');
    await draining;
    assert.equal(agent.state, 'closed');
  });
});
