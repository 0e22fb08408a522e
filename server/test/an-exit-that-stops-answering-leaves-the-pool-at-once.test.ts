import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { nextLog, throughProxy } from './support/node-health.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { tcpConnections } from './support/tcp-connections.ts';

const PING_INTERVAL_MS = 500;
const PING_TIMEOUT_MS = 1_500;
/** Scheduling slack on a loaded two-core machine, on top of the PING deadline. */
const MARGIN_MS = 2_500;
/**
 * Uploads riding the frozen node: 24 streams of 1 MiB window each can put more in flight
 * than the node's socket buffers hold, so the hub's writes to it block, which is what
 * kept Node from ever closing the session before.
 */
const UPLOADS = 24;

let net: ProxyNetwork;
let sink: Server;
let sinkPort: number;
let sinkBytes = 0;
const sinkSockets = new Set<Socket>();

before(async () => {
  net = await startProxyNetwork(
    [
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
    ],
    {
      HUB_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      HUB_PING_TIMEOUT_MS: String(PING_TIMEOUT_MS),
    },
  );
  // A target that reads everything and answers nothing.
  sink = createServer((socket) => {
    sinkSockets.add(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      sinkBytes += chunk.length;
    });
    socket.once('close', () => sinkSockets.delete(socket));
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  sinkPort = (sink.address() as AddressInfo).port;
});

after(async () => {
  for (const socket of sinkSockets) socket.destroy();
  await new Promise((resolve) => sink.close(resolve));
  await net.close(); // SIGKILL ends a stopped agent too
});

/** A CONNECT tunnel to the sink through the de exit, writing for as long as it is let. */
async function upload(): Promise<Socket> {
  const socket = connect(net.ports.proxy, '127.0.0.1');
  socket.on('error', () => {}); // the cut may come as a reset
  const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
  socket.write(
    `CONNECT 127.0.0.1:${sinkPort} HTTP/1.1\r\nHost: 127.0.0.1:${sinkPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
  );
  const [first] = (await once(socket, 'data')) as [Buffer];
  assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
  const chunk = Buffer.alloc(64 * 1024, 0x75);
  const pump = () => {
    while (!socket.destroyed && socket.write(chunk));
    if (!socket.destroyed) socket.once('drain', pump);
  };
  pump();
  return socket;
}

test('an agent frozen mid-transfer leaves selection within its PING deadline; new connections are not sent to it', async (t) => {
  const pinned = await throughProxy(net, '-country-de-session-frozen1');
  assert.equal(pinned.status, 200);
  assert.equal(pinned.body, '127.0.0.12');

  const tunnels = await Promise.all(Array.from({ length: UPLOADS }, () => upload()));
  const before = sinkBytes;
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (sinkBytes - before < UPLOADS * 1024 * 1024) return;
      clearInterval(check);
      resolve();
    }, 10);
  });
  // Not events.once: it rejects on the 'error' a reset brings before 'close'.
  const tunnelsClosed = Promise.all(
    tunnels.map((socket) => new Promise((resolve) => socket.once('close', resolve))),
  );

  const agent = net.agents.get('127.0.0.12');
  assert.ok(agent?.pid);
  const [tunnel] = (await tcpConnections(agent.pid)).filter(
    (connection) => connection.remotePort === net.ports.hub,
  );
  assert.ok(tunnel, "the agent's connection to the hub");
  const serverPid = net.server.child.pid as number;
  const hubHoldsTunnel = async () =>
    (await tcpConnections(serverPid)).some(
      (connection) =>
        connection.localPort === net.ports.hub && connection.remotePort === tunnel.localPort,
    );
  assert.equal(await hubHoldsTunnel(), true);
  const nodeDown = nextLog(
    net.server,
    (line) => line.msg === 'node down' && line.reason === 'ping_timeout',
    PING_INTERVAL_MS + PING_TIMEOUT_MS + MARGIN_MS,
    'node down (ping_timeout)',
  );
  const frozenAt = performance.now();
  agent.kill('SIGSTOP');
  await nodeDown;
  const tookMs = performance.now() - frozenAt;
  t.diagnostic(`frozen node out of the pool after ${Math.round(tookMs)} ms`);
  assert.ok(
    tookMs <= PING_INTERVAL_MS + PING_TIMEOUT_MS + MARGIN_MS,
    `out of the pool after ${Math.round(tookMs)} ms`,
  );

  // New connections: the frozen exit is no longer chosen.
  const targeted = await throughProxy(net, '-country-de');
  assert.deepEqual([targeted.status, targeted.code], [503, 'no_exit_available']);
  const sticky = await throughProxy(net, '-country-de-session-frozen1');
  assert.deepEqual([sticky.status, sticky.code], [503, 'session_exit_gone']);
  for (let i = 0; i < 5; i++) {
    const anyExit = await throughProxy(net, '');
    assert.deepEqual([anyExit.status, anyExit.body], [200, '127.0.0.13']);
  }

  // And its connection is really gone, not just out of selection, although the node never
  // read another byte (Node alone would wait for its blocked write for ever): the hub no
  // longer holds the socket, and the tunnels that rode it are cut.
  await eventually(async () => !(await hubHoldsTunnel()), MARGIN_MS, 'the hub to drop the socket');
  await tunnelsClosed;
});
