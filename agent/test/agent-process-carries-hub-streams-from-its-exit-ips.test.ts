/**
 * The agent program as operators run it: a child process started with CLI options,
 * against a real hub in this process, reaching real TCP servers on loopback.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { isTunnelError } from '@ipcola/shared/tunnel-errors';
import { type AgentProcess, spawnAgent } from './support/agent-process.ts';
import {
  nextNodeDown,
  nextNodeUp,
  type RunningHub,
  startHub,
  type TestHub,
} from './support/in-test-hub.ts';

const TOKEN = 'node-token-for-tests';
const NODE_ID = 'node-under-test';
const TOKENS = { [TOKEN]: NODE_ID };

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function hub(options: { port?: number } = {}): Promise<RunningHub> {
  const running = await startHub(TOKENS, options);
  cleanups.push(() => running.stop());
  return running;
}

/** The agent CLI with the token in the environment (as the usage text recommends). */
function agent(hubPort: number, extra: readonly string[] = []): AgentProcess {
  const child = spawnAgent(
    [
      '--hub',
      `127.0.0.1:${hubPort}`,
      '--exit-ip',
      '127.0.0.12',
      '--allow-target',
      '127.0.0.1/32',
      '--log-level',
      'debug',
      ...extra,
    ],
    { IPCOLA_NODE_TOKEN: TOKEN },
  );
  cleanups.push(() => child.stop());
  return child;
}

/** A TCP server on 127.0.0.1:0 whose sockets and listener are closed after the test. */
async function listen(onConnection: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** Answers each connection with the address it came from, then closes it. */
const whoAmI = () => listen((socket) => socket.end(socket.remoteAddress ?? 'unknown'));

async function readAll(stream: Duplex): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = once(stream, 'end');
  stream.end();
  await ended;
  return Buffer.concat(chunks).toString('utf8');
}

/** Gathers what `stream` says; `waitFor` resolves once the text holds `expected`. */
function collect(stream: Duplex) {
  let text = '';
  const waiters: Array<{ expected: string; resolve: () => void }> = [];
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text += chunk;
    for (const waiter of waiters.filter((w) => text.includes(w.expected))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  const ended = once(stream, 'end').then(() => text);
  // A test that cuts the stream never awaits its end: the rejection is not news there.
  ended.catch(() => {});
  return {
    waitFor(expected: string): Promise<void> {
      if (text.includes(expected)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ expected, resolve }));
    },
    ended,
  };
}

async function assertRefused(hub: TestHub, target: { host: string; port: number }, code: string) {
  await assert.rejects(
    hub.openStream(NODE_ID, { ...target, exitIp: '127.0.0.12' }),
    (error: unknown) => {
      assert.ok(isTunnelError(error), `expected a TunnelError, got ${String(error)}`);
      assert.equal(error.code, code);
      return true;
    },
  );
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('the agent process joins a hub', { timeout: 60_000 }, () => {
  test('the hub sees node-up with the announced exit IPs, location and type', async () => {
    const { hub: h, port } = await hub();
    const up = nextNodeUp(h);
    const child = agent(port, [
      '--exit-ip',
      '127.0.0.13',
      '--country',
      'DE',
      '--city',
      'berlin',
      '--asn',
      'AS3320',
      '--type',
      'datacenter',
      '--max-streams',
      '64',
    ]);
    const node = await up;
    assert.equal(node.nodeId, NODE_ID);
    assert.deepEqual(node.hello.exitIps, ['127.0.0.12', '127.0.0.13']);
    assert.equal(node.hello.country, 'de');
    assert.equal(node.hello.city, 'berlin');
    assert.equal(node.hello.asn, 3320);
    assert.equal(node.hello.type, 'datacenter');
    assert.equal(node.hello.maxStreams, 64);
    // Logs are JSON lines that carry the node id once the hub named it, never the token.
    await child.waitForLog((line) => line.msg === 'connected to the hub', 'the connection');
    const text = JSON.stringify(child.logs);
    assert.ok(!text.includes(TOKEN), 'the token reached the logs');
  });

  test('streams leave from the exit IP the hub leased', async () => {
    const { hub: h, port } = await hub();
    const up = nextNodeUp(h);
    agent(port, ['--exit-ip', '127.0.0.13']);
    await up;
    const target = { host: '127.0.0.1', port: await whoAmI() };
    const first = await h.openStream(NODE_ID, { ...target, exitIp: '127.0.0.12' });
    assert.equal(await readAll(first), '127.0.0.12');
    const second = await h.openStream(NODE_ID, { ...target, exitIp: '127.0.0.13' });
    assert.equal(await readAll(second), '127.0.0.13');
  });

  test('--tunnel v1 speaks HTTP/2 as agents before v2 did; by default it is v2', async () => {
    const { hub: h, port } = await hub();
    const firstUp = nextNodeUp(h);
    const first = agent(port);
    assert.equal((await firstUp).protocol, 'mux');
    await first.stop();
    const up = nextNodeUp(h);
    agent(port, ['--tunnel', 'v1']);
    assert.equal((await up).protocol, 'h2');
    const stream = await h.openStream(NODE_ID, {
      host: '127.0.0.1',
      port: await whoAmI(),
      exitIp: '127.0.0.12',
    });
    assert.equal(await readAll(stream), '127.0.0.12');
  });

  test('the exit policy and connect failures answer with their codes', async () => {
    const { hub: h, port } = await hub();
    const up = nextNodeUp(h);
    agent(port);
    await up;
    const open = await whoAmI();
    // Loopback outside --allow-target.
    await assertRefused(h, { host: '127.0.0.2', port: open }, 'target_forbidden');
    // SMTP, whatever the address.
    await assertRefused(h, { host: 'localhost', port: 25 }, 'target_forbidden');
    await assertRefused(h, { host: '127.0.0.1', port: await closedPort() }, 'target_unreachable');
    await assertRefused(h, { host: 'no-such-host.invalid', port: 80 }, 'target_unreachable');
    // And the node is still fine.
    const stream = await h.openStream(NODE_ID, {
      host: '127.0.0.1',
      port: open,
      exitIp: '127.0.0.12',
    });
    assert.equal(await readAll(stream), '127.0.0.12');
  });
});

describe('the agent process stops and recovers', { timeout: 60_000 }, () => {
  test('SIGTERM drains: an open stream runs to its end, then the agent exits 0', async () => {
    const { hub: h, port } = await hub();
    const up = nextNodeUp(h);
    const child = agent(port);
    await up;

    let accept!: (socket: Socket) => void;
    const accepted = new Promise<Socket>((resolve) => {
      accept = resolve;
    });
    const targetPort = await listen((socket) => {
      socket.write('before;');
      accept(socket);
    });
    const stream = await h.openStream(NODE_ID, {
      host: '127.0.0.1',
      port: targetPort,
      exitIp: '127.0.0.12',
    });
    const target = await accepted;
    const fromTarget = collect(stream);
    const fromCustomer = collect(target);
    await fromTarget.waitFor('before;');

    const down = nextNodeDown(h);
    child.child.kill('SIGTERM');
    const downEvent = await down;
    assert.equal(downEvent.nodeId, NODE_ID);
    await child.waitForLog((line) => line.msg.startsWith('draining'), 'the drain');

    // Bytes still flow both ways after the signal, until the target closes.
    stream.write('from the customer;');
    await fromCustomer.waitFor('from the customer;');
    target.end('after;');
    stream.end();
    assert.equal(await fromTarget.ended, 'before;after;');
    assert.equal(await fromCustomer.ended, 'from the customer;');

    const exit = await child.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(child.logs.some((line) => line.msg === 'drained; exiting'));
  });

  test('a second signal during the drain exits at once, cutting open streams', async () => {
    const { hub: h, port } = await hub();
    const up = nextNodeUp(h);
    const child = agent(port);
    await up;
    const targetPort = await listen((socket) => socket.write('before;'));
    const stream = await h.openStream(NODE_ID, {
      host: '127.0.0.1',
      port: targetPort,
      exitIp: '127.0.0.12',
    });
    stream.on('error', () => {});
    await collect(stream).waitFor('before;');

    child.child.kill('SIGTERM');
    await child.waitForLog((line) => line.msg.startsWith('draining'), 'the drain');
    // Closed with an error or without, as the dying agent's socket ends with a FIN or a
    // reset (unread bytes in its receive buffer make it a reset).
    const closed = new Promise((resolve) => stream.once('close', resolve));
    child.child.kill('SIGINT');
    const exit = await child.exited;
    assert.deepEqual(exit, { code: 128 + 2, signal: null });
    assert.ok(child.logs.some((line) => line.msg.startsWith('second signal')));
    await closed;
  });

  test('after a hub restart on the same port the agent comes back by itself', async () => {
    const first = await hub();
    const up = nextNodeUp(first.hub);
    const child = agent(first.port);
    await up;

    const lost = child.waitForLog((line) => line.msg.startsWith('disconnected'), 'the loss');
    await first.stop();
    await lost;

    const second = await hub({ port: first.port });
    const node = await nextNodeUp(second.hub);
    assert.equal(node.nodeId, NODE_ID);
    const stream = await second.hub.openStream(NODE_ID, {
      host: '127.0.0.1',
      port: await whoAmI(),
      exitIp: '127.0.0.12',
    });
    assert.equal(await readAll(stream), '127.0.0.12');
  });

  test('a token the hub does not know is logged as such, and the agent keeps running', async () => {
    const { port } = await hub();
    const child = spawnAgent(
      ['--hub', `127.0.0.1:${port}`, '--exit-ip', '127.0.0.12', '--token', 'not-a-known-token'],
      {},
    );
    cleanups.push(() => child.stop());
    const line = await child.waitForLog(
      (entry) => entry.msg.startsWith('the hub refused the node token'),
      'the refusal',
    );
    assert.equal(line.status, 401);
    await child.waitForLog((entry) => entry.msg.includes('retrying'), 'the retry');
    assert.equal(child.child.exitCode, null);
    assert.ok(!JSON.stringify(child.logs).includes('not-a-known-token'));
  });
});
