/**
 * createEgress with a fake DNS lookup and real sockets on loopback: what it connects
 * to, from where, and which code each failure carries.
 */
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { once } from 'node:events';
import {
  type AddressInfo,
  createServer,
  connect as netConnect,
  type Server,
  Socket,
  type TcpNetConnectOpts,
} from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { createExitPolicy, type LookupAll } from '@ipcola/shared/exit-policy';
import { isTunnelError } from '@ipcola/shared/tunnel-errors';
import { createEgress, type EgressOptions } from '../../src/egress.ts';
import { foreignAddress } from '../support/agent-process.ts';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fake resolver: fixed answers per name, every question recorded. */
function fakeLookup(answers: Record<string, string[]>) {
  const asked: string[] = [];
  const lookup: LookupAll = async (hostname) => {
    asked.push(hostname);
    const addresses = answers[hostname];
    if (!addresses) {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    }
    return addresses.map(
      (address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }),
    );
  };
  return { lookup, asked };
}

/** net.connect, with every call's options recorded and every socket closed after the test. */
function recordingConnect(make: (options: TcpNetConnectOpts) => Socket = netConnect) {
  const calls: TcpNetConnectOpts[] = [];
  const sockets: Socket[] = [];
  let firstCall!: () => void;
  const called = new Promise<void>((resolve) => {
    firstCall = resolve;
  });
  const connect = (options: TcpNetConnectOpts): Socket => {
    calls.push(options);
    firstCall();
    const socket = make(options);
    sockets.push(socket);
    return socket;
  };
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
  });
  return { connect, calls, sockets, called };
}

/** A socket that never connects (a target that drops SYNs). */
const blackHole = (): Socket => new Socket();

/** A TCP server on 127.0.0.1:0 that answers each client with its address, then closes. */
async function whoAmI(): Promise<number> {
  const server: Server = createServer((socket) => {
    socket.on('error', () => {});
    socket.end(socket.remoteAddress ?? 'unknown');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function readAll(stream: Duplex): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.end();
  await once(stream, 'end');
  return Buffer.concat(chunks).toString('utf8');
}

async function assertCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isTunnelError(error), `expected a TunnelError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

function egress(overrides: Partial<EgressOptions> & { allow?: string[] } = {}) {
  const { allow = ['127.0.0.0/8'], ...rest } = overrides;
  return createEgress({ policy: createExitPolicy({ allowTargets: allow }), ...rest });
}

const live = () => new AbortController().signal;

describe('egress connects only to the addresses the policy checked', () => {
  test('a name resolving to one public and one private address is refused outright', async () => {
    const dns = fakeLookup({ 'mixed.example': ['93.184.215.14', '10.0.0.7'] });
    const net = recordingConnect();
    const open = egress({ allow: [], lookup: dns.lookup, connect: net.connect });
    await assertCode(
      open({ host: 'mixed.example', port: 443, exitIp: '127.0.0.12' }, live()),
      'target_forbidden',
    );
    assert.deepEqual(net.calls, [], 'no connection may be attempted');
  });

  test('it dials the checked IP literal from the exit IP, and resolves only once', async () => {
    const port = await whoAmI();
    const dns = fakeLookup({ 'service.example': ['127.0.0.1'] });
    const net = recordingConnect();
    const open = egress({ allow: ['127.0.0.1/32'], lookup: dns.lookup, connect: net.connect });
    const socket = await open({ host: 'service.example', port, exitIp: '127.0.0.12' }, live());
    assert.deepEqual(dns.asked, ['service.example']);
    assert.equal(net.calls.length, 1);
    const [call] = net.calls;
    assert.equal(call?.host, '127.0.0.1');
    assert.equal(call?.port, port);
    assert.equal(call?.localAddress, '127.0.0.12');
    assert.ok(socket instanceof Socket);
    assert.equal(socket.remoteAddress, '127.0.0.1');
    assert.equal(socket.localAddress, '127.0.0.12');
    // The target sees the exit IP.
    assert.equal(await readAll(socket), '127.0.0.12');
  });

  test('a host name can never reach the resolver through the socket', async () => {
    const net = recordingConnect();
    const open = egress({
      lookup: fakeLookup({ 'a.example': ['127.0.0.1'] }).lookup,
      connect: net.connect,
    });
    const socket = await open(
      { host: 'a.example', port: await whoAmI(), exitIp: '127.0.0.12' },
      live(),
    );
    socket.destroy();
    const guard = net.calls[0]?.lookup;
    assert.equal(typeof guard, 'function');
    const answer = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
      guard?.('example.com', {}, (error) => resolve(error)),
    );
    assert.equal(answer?.code, 'EGRESS_NO_LOOKUP');
  });

  test('addresses of the other family than the exit IP are skipped', async () => {
    const port = await whoAmI();
    const dns = fakeLookup({ 'dual.example': ['::1', '127.0.0.1'] });
    const net = recordingConnect();
    const open = egress({
      allow: ['127.0.0.1/32', '::1/128'],
      lookup: dns.lookup,
      connect: net.connect,
    });
    const socket = await open({ host: 'dual.example', port, exitIp: '127.0.0.12' }, live());
    assert.deepEqual(
      net.calls.map((call) => call.host),
      ['127.0.0.1'],
    );
    assert.equal(await readAll(socket), '127.0.0.12');
  });

  test('a name with no address of the exit IP family is unreachable', async () => {
    const dns = fakeLookup({ 'v6only.example': ['::1'] });
    const open = egress({ allow: ['::1/128'], lookup: dns.lookup });
    await assertCode(
      open({ host: 'v6only.example', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_unreachable',
    );
  });

  test('candidates are tried in order: a refused one is followed by the next', async () => {
    const port = await whoAmI();
    // Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1): refused.
    const dns = fakeLookup({ 'two.example': ['127.0.0.2', '127.0.0.1'] });
    const net = recordingConnect();
    const open = egress({ lookup: dns.lookup, connect: net.connect });
    const socket = await open({ host: 'two.example', port, exitIp: '127.0.0.12' }, live());
    assert.deepEqual(
      net.calls.map((call) => call.host),
      ['127.0.0.2', '127.0.0.1'],
    );
    assert.equal(await readAll(socket), '127.0.0.12');
  });

  test('a silent candidate gets its attempt timeout, then the next one is tried', async () => {
    const port = await whoAmI();
    const dns = fakeLookup({ 'slow.example': ['127.0.0.3', '127.0.0.1'] });
    const net = recordingConnect((options) =>
      options.host === '127.0.0.3' ? blackHole() : netConnect(options),
    );
    const open = egress({ lookup: dns.lookup, connect: net.connect, attemptTimeoutMs: 50 });
    const socket = await open({ host: 'slow.example', port, exitIp: '127.0.0.12' }, live());
    assert.equal(net.sockets[0]?.destroyed, true, 'the abandoned attempt is closed');
    assert.equal(await readAll(socket), '127.0.0.12');
  });
});

describe('egress failures carry tunnel codes', () => {
  test('policy refusals: private address, SMTP port, invalid host', async () => {
    const open = egress({ allow: [] });
    await assertCode(
      open({ host: '10.1.2.3', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_forbidden',
    );
    await assertCode(
      open({ host: '8.8.8.8', port: 25, exitIp: '127.0.0.12' }, live()),
      'target_forbidden',
    );
    await assertCode(
      open({ host: 'a b', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_forbidden',
    );
  });

  test('a DNS failure is unreachable', async () => {
    const open = egress({ lookup: fakeLookup({}).lookup });
    await assertCode(
      open({ host: 'nowhere.example', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_unreachable',
    );
  });

  test('a refused connection is unreachable', async () => {
    const open = egress();
    await assertCode(
      open({ host: '127.0.0.1', port: await closedPort(), exitIp: '127.0.0.12' }, live()),
      'target_unreachable',
    );
  });

  test('no answer within the connect timeout is target_timeout, and the socket is closed', async () => {
    const net = recordingConnect(blackHole);
    const open = egress({ connect: net.connect, connectTimeoutMs: 50 });
    await assertCode(
      open({ host: '127.0.0.1', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_timeout',
    );
    assert.equal(net.sockets[0]?.destroyed, true);
  });

  test('a DNS lookup that hangs past the connect timeout is target_timeout', async () => {
    const lookup: LookupAll = () => new Promise(() => {});
    const open = egress({ lookup, connectTimeoutMs: 50 });
    await assertCode(
      open({ host: 'hang.example', port: 80, exitIp: '127.0.0.12' }, live()),
      'target_timeout',
    );
  });

  test('an exit IP this machine cannot bind is the exit failing', async () => {
    const open = egress();
    await assertCode(
      open({ host: '127.0.0.1', port: await whoAmI(), exitIp: foreignAddress() }, live()),
      'exit_failed',
    );
  });
});

describe('the hub cancelling an egress', () => {
  test('abort while connecting destroys the pending socket and rejects', async () => {
    const net = recordingConnect(blackHole);
    const open = egress({ connect: net.connect });
    const cancel = new AbortController();
    const opening = open({ host: '127.0.0.1', port: 80, exitIp: '127.0.0.12' }, cancel.signal);
    await net.called;
    cancel.abort(new Error('customer gone'));
    await assertCode(opening, 'exit_failed');
    assert.equal(net.sockets[0]?.destroyed, true);
  });

  test('abort during DNS rejects at once and never connects', async () => {
    const net = recordingConnect();
    let asked!: () => void;
    const lookupStarted = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const lookup: LookupAll = () => {
      asked();
      return new Promise(() => {});
    };
    const open = egress({ lookup, connect: net.connect });
    const cancel = new AbortController();
    const opening = open(
      { host: 'slow-dns.example', port: 80, exitIp: '127.0.0.12' },
      cancel.signal,
    );
    await lookupStarted;
    cancel.abort(new Error('customer gone'));
    await assertCode(opening, 'exit_failed');
    assert.deepEqual(net.calls, []);
  });

  test('an already aborted signal is refused before any work', async () => {
    const dns = fakeLookup({ 'a.example': ['127.0.0.1'] });
    const open = egress({ lookup: dns.lookup });
    await assertCode(
      open({ host: 'a.example', port: 80, exitIp: '127.0.0.12' }, AbortSignal.abort()),
      'exit_failed',
    );
    assert.deepEqual(dns.asked, []);
  });
});
