/**
 * A half-open tunnel (the client has ended its side, the target neither answers nor
 * closes) must not stay open for ever: once no byte has moved for the idle timeout, it is
 * cut at both ends. The server's timeout is two minutes and not configurable, so this
 * test wires the gateway and hub modules as main.ts does, with a one-second idle timeout,
 * in this process; the exit node is the real agent program, and every connection is a
 * real socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { spawnAgent } from '@ipcola/agent/testing';
import { createGateway, type Gateway } from '../src/gateway/index.ts';
import { createHub, createHubServer } from '../src/hub/index.ts';
import { createLogger } from '../src/log/index.ts';
import { createUsageMeter } from '../src/metering/index.ts';
import { createMemoryHotState } from '../src/store/index.ts';
import { eventually } from './support/engines.ts';
import { tcpConnections } from './support/tcp-connections.ts';

const IDLE_MS = 1_000;
const TOKEN = 'node-token-for-the-idle-test';
const KEY = { id: 'key1', secret: 'a-secret-for-the-idle-test' };

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** A target that reads, records what happened, and by itself never writes or closes. */
interface MuteTarget {
  port: number;
  /** Open as far as Node knows (see assertNothingOpen). */
  sockets: Set<Socket>;
  /** What happened on each connection, in order of arrival. */
  connections: string[][];
  /** Bytes to write to each new connection every `every` ms, `times` times, then end. */
  drip: { every: number; times: number } | null;
}

describe('idle half-open tunnels are cut after the idle timeout', () => {
  const cleanups: Array<() => unknown> = [];
  let gateway: Gateway;
  let ports: { proxy: number; socks: number };
  let agentPid: number;
  let target: MuteTarget;

  before(async () => {
    const hub = createHub({
      authenticate: async (token) => (token === TOKEN ? { nodeId: 'node-1' } : null),
    });
    const hubServer = createHubServer(hub);
    const hubPort = await listen(hubServer);
    cleanups.push(async () => {
      await hub.close();
      await new Promise((resolve) => hubServer.close(resolve));
    });
    const hot = createMemoryHotState();
    const usage = createUsageMeter(hot.counters, { pushIntervalMs: 60_000 });
    cleanups.push(async () => {
      await usage.close();
      await hot.close();
    });
    gateway = createGateway({
      logger: createLogger('silent'),
      sessions: hot.sessions,
      usage,
      verifyKey: async (id, secret) =>
        id === KEY.id && secret === KEY.secret
          ? { id, accountId: 'account-1', scopes: ['proxy'], maxConcurrency: null }
          : null,
      openStream: (exit, to) =>
        hub.openStream(exit.nodeId, { host: to.host, port: to.port, exitIp: exit.ip }),
      timeouts: { idleMs: IDLE_MS },
    });
    hub.on('node-up', (node) =>
      gateway.addNodeExits(
        node.nodeId,
        node.hello.exitIps.map((ip) => ({
          ip,
          type: node.hello.type,
          country: node.hello.country,
        })),
      ),
    );
    hub.on('node-down', ({ nodeId }) => gateway.removeNodeExits(nodeId));
    ports = { proxy: await listen(gateway.httpServer), socks: await listen(gateway.socksServer) };
    cleanups.push(async () => {
      await gateway.close();
      await new Promise((resolve) => gateway.httpServer.close(resolve));
      await new Promise((resolve) => gateway.socksServer.close(resolve));
    });

    const up = once(hub, 'node-up');
    const agent = spawnAgent(
      [
        '--hub',
        `127.0.0.1:${hubPort}`,
        '--exit-ip',
        '127.0.0.12',
        '--country',
        'de',
        '--allow-target',
        '127.0.0.1/32',
        '--log-level',
        'warn',
      ],
      { IPCOLA_NODE_TOKEN: TOKEN },
    );
    cleanups.push(() => agent.stop());
    agentPid = agent.child.pid as number;
    await Promise.race([
      up,
      agent.exited.then((exit) => {
        throw new Error(`the agent exited (${JSON.stringify(exit)}): ${agent.stderr()}`);
      }),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the agent did not connect in 20 s')), 20_000).unref(),
      ),
    ]);

    target = { port: 0, sockets: new Set(), connections: [], drip: null };
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      target.sockets.add(socket);
      const events: string[] = [];
      target.connections.push(events);
      socket.on('data', (chunk: Buffer) => events.push(`data ${chunk}`));
      socket.on('end', () => events.push('end'));
      socket.on('error', (error: NodeJS.ErrnoException) => events.push(`error ${error.code}`));
      socket.on('close', () => {
        events.push('close');
        target.sockets.delete(socket);
      });
      const drip = target.drip;
      if (drip) {
        let left = drip.times;
        const timer = setInterval(() => {
          if (left-- > 0) socket.write('.');
          else {
            clearInterval(timer);
            socket.end();
          }
        }, drip.every);
        socket.on('close', () => clearInterval(timer));
      }
    });
    target.port = await listen(server);
    cleanups.push(() => {
      for (const socket of target.sockets) socket.destroy();
      server.close();
    });
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** Opens a tunnel to the target through `protocol`, and returns the client socket. */
  async function openTunnel(protocol: 'connect' | 'socks5'): Promise<{
    socket: Socket;
    received: () => string;
  }> {
    const socket = connect({
      port: protocol === 'connect' ? ports.proxy : ports.socks,
      host: '127.0.0.1',
      allowHalfOpen: true,
    });
    socket.on('error', () => {});
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    if (protocol === 'connect') {
      const auth = Buffer.from(`${KEY.id}-country-de:${KEY.secret}`).toString('base64');
      socket.write(
        `CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      );
      await eventually(() => text.includes('\r\n\r\n'), 10_000, 'the CONNECT answer');
      assert.match(text, /^HTTP\/1\.1 200 /);
      const head = text.indexOf('\r\n\r\n') + 4;
      return { socket, received: () => text.slice(head) };
    }
    const user = Buffer.from(`${KEY.id}-country-de`);
    const pass = Buffer.from(KEY.secret);
    socket.write(
      Buffer.concat([
        Buffer.from([0x05, 0x01, 0x02, 0x01, user.length]),
        user,
        Buffer.from([pass.length]),
        pass,
        Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, target.port >> 8, target.port & 0xff]),
      ]),
    );
    await eventually(() => text.length >= 14, 10_000, 'the SOCKS5 replies');
    assert.equal(
      Buffer.from(text.slice(0, 14), 'latin1').toString('hex'),
      '0502010005000001000000000000',
    );
    return { socket, received: () => text.slice(14) };
  }

  /** Nothing left: no client connection at the gateway, no connection from the exit. */
  async function assertNothingOpen(): Promise<void> {
    await eventually(
      async () =>
        (await new Promise<number>((resolve, reject) =>
          gateway.httpServer.getConnections((error, n) => (error ? reject(error) : resolve(n))),
        )) === 0 &&
        (await new Promise<number>((resolve, reject) =>
          gateway.socksServer.getConnections((error, n) => (error ? reject(error) : resolve(n))),
        )) === 0,
      5_000,
      'the gateway to hold no client connection',
    );
    await eventually(
      async () => (await tcpConnections(agentPid)).every((c) => c.remotePort !== target.port),
      5_000,
      'the exit to hold no connection to the target',
    );
    // The target's sockets as the kernel sees them: a socket that has read EOF does not
    // notice a reset until it writes, so Node's own view would lag.
    await eventually(
      async () => (await tcpConnections(process.pid)).every((c) => c.localPort !== target.port),
      5_000,
      "the target's side to be closed or reset",
    );
    for (const socket of target.sockets) socket.destroy();
  }

  for (const protocol of ['connect', 'socks5'] as const) {
    test(`${protocol}: the target sees the half-close, and the silent tunnel is cut after the idle timeout`, async () => {
      const seen = target.connections.length;
      const { socket } = await openTunnel(protocol);
      const events = () => target.connections[seen] ?? [];
      const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
      // Timed from the client's last byte: the poll below may notice the EOF late on a
      // loaded machine, and the idle timer started when the bytes went through.
      const halfClosedAt = performance.now();
      socket.end('last words');
      await eventually(() => events().includes('end'), 5_000, 'the EOF at the target');
      assert.deepEqual(events(), ['data last words', 'end']);
      // Neither side says anything more: only the idle timeout can end this.
      const hadError = await closed;
      const afterMs = performance.now() - halfClosedAt;
      assert.ok(afterMs >= IDLE_MS * 0.9, `cut after ${Math.round(afterMs)} ms`);
      assert.ok(afterMs < IDLE_MS + 5_000, `cut after ${Math.round(afterMs)} ms`);
      // A cut, not a clean end: the client must not take silence for a complete answer.
      assert.equal(hadError, true, 'the client sees a reset');
      await assertNothingOpen();
      assert.deepEqual(events().slice(0, 2), ['data last words', 'end']);
      assert.equal(target.connections.length, seen + 1);
    });
  }

  test('a half-open tunnel that keeps carrying bytes one way is not cut, and ends cleanly', async () => {
    // Three idle timeouts' worth of bytes, one every quarter of it.
    target.drip = { every: IDLE_MS / 4, times: 12 };
    try {
      const { socket, received } = await openTunnel('connect');
      const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
      socket.end();
      socket.on('end', () => socket.destroy());
      assert.equal(await closed, false, 'a clean close');
      assert.equal(received(), '.'.repeat(12));
      await assertNothingOpen();
    } finally {
      target.drip = null;
    }
  });
});
