import assert from 'node:assert/strict';
import { once } from 'node:events';
import {
  type AddressInfo,
  createServer,
  connect as netConnect,
  type Server,
  type Socket,
} from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { SocksClient } from 'socks';
import { ipcolaError, PROXY_ERRORS, type ProxyErrorCode } from '../../src/errors/index.ts';
import {
  createSocks5Server,
  type Destroyable,
  type Socks5Options,
  type SocksClient as SocksPeer,
  type SocksTarget,
} from '../../src/gateway/socks5.ts';
import { createLogger } from '../../src/log/index.ts';

const USER = 'key1-country-de';
const PASS = 's3cret-Pass-XYZ';
const TEST_TIMEOUT = { timeout: 20_000 };

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// ---------------------------------------------------------------- helpers

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/** Closes a server and destroys every socket it still holds. */
function track(server: Server): Set<Socket> {
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  cleanups.push(async () => {
    for (const socket of open) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return open;
}

async function listen(server: Server, host: string): Promise<number> {
  server.listen(0, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** An echo server on host; the port it listens on. */
async function startEcho(host = '127.0.0.1'): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  track(server);
  return listen(server, host);
}

interface Gateway {
  port: number;
  server: Server;
  /** Server-side client sockets not yet closed. */
  open: Set<Socket>;
  auths: Array<{ username: string; password: string; client: SocksPeer }>;
  targets: SocksTarget[];
  tunnels: number;
  /** Waits for every server-side socket to close, then checks the server counts none. */
  settled(): Promise<void>;
}

type Auth = { username: string };
type Options = Socks5Options<Auth, Destroyable>;

/** Opens the target for real: the module does not resolve, this handler does. */
async function openTarget(target: SocksTarget): Promise<Socket> {
  const host = target.host === 'localhost' ? '127.0.0.1' : target.host;
  const socket = netConnect({ host, port: target.port });
  try {
    await once(socket, 'connect');
  } catch (error) {
    socket.destroy();
    throw ipcolaError('target_unreachable', undefined, { cause: error });
  }
  cleanups.push(() => {
    socket.destroy();
  });
  return socket;
}

function pipeTunnel(socket: Socket, upstream: Destroyable): void {
  const up = upstream as Socket;
  up.on('error', () => {});
  socket.on('close', () => up.destroy());
  up.on('close', () => socket.destroy());
  socket.pipe(up);
  up.pipe(socket);
}

async function startGateway(overrides: Partial<Options> = {}): Promise<Gateway> {
  const gateway: Partial<Gateway> & Pick<Gateway, 'auths' | 'targets' | 'tunnels'> = {
    auths: [],
    targets: [],
    tunnels: 0,
  };
  const options: Options = {
    handshakeTimeoutMs: 5_000,
    logger: createLogger('silent'),
    async authenticate(username, password) {
      if (username === USER && password === PASS) return { username };
      throw ipcolaError('auth_failed');
    },
    connect: async (_auth, target) => openTarget(target),
    tunnel: pipeTunnel,
    ...overrides,
  };
  const server = createSocks5Server<Auth, Destroyable>({
    ...options,
    authenticate(username, password, client) {
      gateway.auths.push({ username, password, client });
      return options.authenticate(username, password, client);
    },
    connect(auth, target, client) {
      gateway.targets.push(target);
      return options.connect(auth, target, client);
    },
    tunnel(socket, upstream, auth) {
      gateway.tunnels += 1;
      options.tunnel(socket, upstream, auth);
    },
  });
  const open = track(server);
  const port = await listen(server, '127.0.0.1');
  return Object.assign(gateway, {
    port,
    server,
    open,
    async settled() {
      // Not events.once(): it rejects on 'error', and a reset is a fine way to close.
      await Promise.all(
        [...open].map((socket) => new Promise((resolve) => socket.once('close', resolve))),
      );
      const count = await new Promise<number>((resolve, reject) =>
        server.getConnections((error, n) => (error ? reject(error) : resolve(n))),
      );
      assert.equal(count, 0, 'the server still holds sockets');
    },
  });
}

/** A raw TCP client for byte-exact frames. */
class RawClient {
  readonly socket: Socket;
  #received: Buffer = Buffer.alloc(0);
  #closed = false;
  readonly #waiters = new Set<() => void>();

  static async open(port: number): Promise<RawClient> {
    const socket = netConnect({ host: '127.0.0.1', port });
    const client = new RawClient(socket);
    await once(socket, 'connect');
    cleanups.push(() => {
      socket.destroy();
    });
    return client;
  }

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#received = Buffer.concat([this.#received, chunk]);
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  write(...parts: Array<Buffer | number[]>): void {
    this.socket.write(Buffer.concat(parts.map((part) => Buffer.from(part))));
  }

  /** The next n bytes; fails if the server closes first. */
  async read(n: number): Promise<Buffer> {
    await this.#until(() => this.#received.length >= n || this.#closed);
    if (this.#received.length < n) {
      throw new Error(`closed after ${this.#received.toString('hex')}, wanted ${n} bytes`);
    }
    const out = this.#received.subarray(0, n);
    this.#received = this.#received.subarray(n);
    return out;
  }

  /** Waits for the connection to close; returns the bytes not read yet. */
  async closed(): Promise<Buffer> {
    await this.#until(() => this.#closed);
    return this.#received;
  }

  #until(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

// Frames, built by hand.
const greeting = (...methods: number[]) => [0x05, methods.length, ...methods];
function credentials(username: string | Buffer, password: string | Buffer): Buffer {
  const user = Buffer.from(username);
  const pass = Buffer.from(password);
  return Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([pass.length]), pass]);
}
function request(command: number, atyp: number, address: number[], port: number): Buffer {
  return Buffer.from([0x05, command, 0x00, atyp, ...address, port >> 8, port & 0xff]);
}
const ipv4Connect = (port: number) => request(0x01, 0x01, [127, 0, 0, 1], port);
function domainConnect(domain: string, port: number): Buffer {
  const name = Buffer.from(domain);
  return request(0x01, 0x03, [name.length, ...name], port);
}
/** The catalogue's REP byte for a code answered with one. */
function repOf(code: ProxyErrorCode): number {
  const socks = PROXY_ERRORS[code].socks;
  if (typeof socks !== 'number') throw new Error(`${code} has no REP byte`);
  return socks;
}
const replyHex = (rep: number) => `05${rep.toString(16).padStart(2, '0')}0001000000000000`;
const GOOD_AUTH = credentials(USER, PASS);

async function socksConnect(port: number, host: string, destinationPort: number) {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port, type: 5, userId: USER, password: PASS },
    command: 'connect',
    destination: { host, port: destinationPort },
  });
  cleanups.push(() => {
    socket.destroy();
  });
  return socket;
}

/** Sends `payload` through an open tunnel and reads the echo back. */
async function echoes(socket: Socket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const done = deferred<Buffer>();
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= payload.length) done.resolve(Buffer.concat(chunks));
  };
  const onClose = () => done.reject(new Error(`closed after ${size} bytes`));
  socket.on('data', onData);
  socket.on('close', onClose);
  socket.write(payload);
  try {
    return await done.promise;
  } finally {
    socket.off('data', onData);
    socket.off('close', onClose);
  }
}

/** A full CONNECT through the gateway with the real client, then a clean close. */
async function assertServes(gateway: Gateway, echoPort: number): Promise<void> {
  const socket = await socksConnect(gateway.port, '127.0.0.1', echoPort);
  assert.equal((await echoes(socket, Buffer.from('still up'))).toString(), 'still up');
  socket.end();
  await once(socket, 'close');
  await gateway.settled();
}

// ---------------------------------------------------------------- good paths

describe('socks5 listener: the good paths', () => {
  test(
    'CONNECT by IPv4, domain and IPv6 echoes bytes; handlers see exactly what was sent',
    TEST_TIMEOUT,
    async () => {
      const echo4 = await startEcho('127.0.0.1');
      const echo6 = await startEcho('::1');
      const gateway = await startGateway();
      const cases: Array<[string, number, SocksTarget]> = [
        ['127.0.0.1', echo4, { host: '127.0.0.1', port: echo4, addressType: 'ipv4' }],
        ['localhost', echo4, { host: 'localhost', port: echo4, addressType: 'domain' }],
        ['::1', echo6, { host: '::1', port: echo6, addressType: 'ipv6' }],
      ];
      for (const [host, port, target] of cases) {
        const socket = await socksConnect(gateway.port, host, port);
        const payload = Buffer.from(`hello via ${host}`);
        assert.deepEqual(await echoes(socket, payload), payload);
        assert.deepEqual(gateway.targets.at(-1), target);
        const auth = gateway.auths.at(-1);
        assert.equal(auth?.username, USER);
        assert.equal(auth?.password, PASS);
        assert.equal(auth?.client.address, '127.0.0.1');
        assert.equal(auth?.client.port, socket.localPort);
        socket.end();
        await once(socket, 'close');
      }
      assert.equal(gateway.tunnels, 3);
      await gateway.settled();
    },
  );

  test(
    'bytes pipelined after the CONNECT request (or the whole handshake) reach the upstream',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const gateway = await startGateway();
      const sizes = [5, 8 * 1024, 256 * 1024];
      for (const size of sizes) {
        const payload = Buffer.alloc(size, `${size}:abcdefghijklmnopqrstuvwxyz`);
        // Everything in one write: greeting, credentials, request and early data.
        const all = await RawClient.open(gateway.port);
        all.write(greeting(0x02), GOOD_AUTH, ipv4Connect(echo), payload);
        assert.equal((await all.read(2 + 2 + 10)).toString('hex'), `05020100${replyHex(0)}`);
        assert.deepEqual(await all.read(size), payload, `one write, ${size} bytes`);
        all.socket.end();
        await all.closed();
        // Step by step, the request and the early data in one write.
        const steps = await RawClient.open(gateway.port);
        steps.write(greeting(0x02));
        assert.equal((await steps.read(2)).toString('hex'), '0502');
        steps.write(GOOD_AUTH);
        assert.equal((await steps.read(2)).toString('hex'), '0100');
        steps.write(ipv4Connect(echo), payload);
        assert.equal((await steps.read(10)).toString('hex'), replyHex(0));
        assert.deepEqual(await steps.read(size), payload, `after the request, ${size} bytes`);
        steps.socket.end();
        await steps.closed();
      }
      await gateway.settled();
    },
  );

  test(
    'a 255-byte username and 0- and 255-byte passwords reach authenticate intact',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const longUser = `k${'x'.repeat(254)}`;
      const longPass = `p${'y'.repeat(254)}`;
      const accepted = new Set([`${longUser}:`, `${USER}:${longPass}`]);
      const gateway = await startGateway({
        async authenticate(username, password) {
          if (accepted.has(`${username}:${password}`)) return { username };
          throw ipcolaError('auth_failed');
        },
      });
      for (const [username, password] of [
        [longUser, ''],
        [USER, longPass],
      ] as const) {
        const client = await RawClient.open(gateway.port);
        client.write(greeting(0x02), credentials(username, password), ipv4Connect(echo), [0x2a]);
        assert.equal((await client.read(15)).toString('hex'), `05020100${replyHex(0)}2a`);
        const seen = gateway.auths.at(-1);
        assert.equal(seen?.username, username);
        assert.equal(seen?.password, password);
        client.socket.end();
        await client.closed();
      }
      await gateway.settled();
    },
  );

  test(
    'NMETHODS 255 with every method byte, 0x02 among them, is served',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const gateway = await startGateway();
      const methods = Array.from({ length: 255 }, (_, i) => 254 - i);
      const client = await RawClient.open(gateway.port);
      client.write(greeting(...methods), GOOD_AUTH, ipv4Connect(echo), [0x07]);
      assert.equal((await client.read(15)).toString('hex'), `05020100${replyHex(0)}07`);
      client.socket.end();
      await client.closed();
      await gateway.settled();
    },
  );

  test(
    'a connect() slower than handshakeTimeoutMs is not cut by the handshake deadline',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const handshakeTimeoutMs = 100;
      const gateway = await startGateway({
        handshakeTimeoutMs,
        async connect(_auth, target) {
          // A slow upstream: the modelled situation itself, not a synchronisation.
          await delay(handshakeTimeoutMs * 3);
          return openTarget(target);
        },
      });
      const socket = await socksConnect(gateway.port, '127.0.0.1', echo);
      assert.equal((await echoes(socket, Buffer.from('slow'))).toString(), 'slow');
      socket.end();
      await once(socket, 'close');
      await gateway.settled();
    },
  );
});

// ---------------------------------------------------------------- refusals

const CODES = Object.keys(PROXY_ERRORS) as ProxyErrorCode[];

describe('socks5 listener: refusals follow the error catalogue', () => {
  test(
    'connect() refusals answer with the catalogue REP byte (auth codes: 0x02)',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      let refuseWith: ProxyErrorCode | null = null;
      const gateway = await startGateway({
        async connect(_auth, target) {
          if (refuseWith !== null) throw ipcolaError(refuseWith);
          return openTarget(target);
        },
      });
      for (const code of CODES) {
        refuseWith = code;
        const socks = PROXY_ERRORS[code].socks;
        const client = await RawClient.open(gateway.port);
        client.write(greeting(0x02), GOOD_AUTH, ipv4Connect(echo));
        // 'close': the connection is closed without a reply.
        const answer = socks === 'close' ? '' : replyHex(socks === 'auth' ? 0x02 : socks);
        assert.equal((await client.closed()).toString('hex'), `05020100${answer}`, code);
      }
      assert.equal(gateway.tunnels, 0);
      refuseWith = null;
      await assertServes(gateway, echo);
    },
  );

  test(
    'authenticate() refusals: auth codes fail RFC 1929, the others answer the request with their REP',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      let refuseWith: ProxyErrorCode | null = null;
      const gateway = await startGateway({
        async authenticate(username) {
          if (refuseWith !== null) throw ipcolaError(refuseWith);
          return { username };
        },
      });
      for (const code of CODES) {
        refuseWith = code;
        const socks = PROXY_ERRORS[code].socks;
        const client = await RawClient.open(gateway.port);
        client.write(greeting(0x02));
        assert.equal((await client.read(2)).toString('hex'), '0502');
        client.write(GOOD_AUTH);
        if (socks === 'auth' || socks === 'close') {
          assert.equal(
            (await client.closed()).toString('hex'),
            socks === 'auth' ? '0101' : '',
            code,
          );
          continue;
        }
        assert.equal((await client.read(2)).toString('hex'), '0100', code);
        client.write(ipv4Connect(echo));
        assert.equal((await client.closed()).toString('hex'), replyHex(socks), code);
      }
      assert.equal(gateway.targets.length, 0, 'connect() is never called after a refusal');
      refuseWith = null;
      await assertServes(gateway, echo);
    },
  );

  test('the socks client sees auth_failed as an RFC 1929 failure', TEST_TIMEOUT, async () => {
    const echo = await startEcho();
    const gateway = await startGateway();
    await assert.rejects(
      SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: gateway.port, type: 5, userId: USER, password: 'wrong' },
        command: 'connect',
        destination: { host: '127.0.0.1', port: echo },
      }),
      /Socks5 Authentication failed/,
    );
    await gateway.settled();
  });

  test('unexpected errors become REP 0x01 general failure', TEST_TIMEOUT, async () => {
    const echo = await startEcho();
    let failIn: 'authenticate' | 'connect' | null = null;
    const gateway = await startGateway({
      async authenticate(username) {
        if (failIn === 'authenticate') throw new Error('database down');
        return { username };
      },
      async connect(_auth, target) {
        if (failIn === 'connect') throw new TypeError('bug');
        return openTarget(target);
      },
    });
    for (const stage of ['authenticate', 'connect'] as const) {
      failIn = stage;
      const client = await RawClient.open(gateway.port);
      client.write(greeting(0x02), GOOD_AUTH, ipv4Connect(echo));
      assert.equal((await client.closed()).toString('hex'), `05020100${replyHex(0x01)}`, stage);
    }
    failIn = null;
    await assertServes(gateway, echo);
  });

  test(
    'BIND and UDP ASSOCIATE get 0x07, an unknown ATYP 0x08, an empty domain 0x04, port 0 0x02',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const gateway = await startGateway();
      const cases: Array<[string, Buffer | number[], number]> = [
        ['BIND', request(0x02, 0x01, [127, 0, 0, 1], echo), 0x07],
        ['UDP ASSOCIATE', request(0x03, 0x01, [0, 0, 0, 0], 0), 0x07],
        ['command 0x09', request(0x09, 0x03, [3, 0x61, 0x62, 0x63], 80), 0x07],
        ['ATYP 0x02', [0x05, 0x01, 0x00, 0x02, 1, 2, 3, 4, 0, 80], 0x08],
        ['ATYP 0x05, header only', [0x05, 0x01, 0x00, 0x05], 0x08],
        ['domain of length 0', request(0x01, 0x03, [0], 80), repOf('target_unreachable')],
        ['domain with a NUL', domainConnect('a\0b', 80), repOf('target_unreachable')],
        ['port 0', request(0x01, 0x01, [127, 0, 0, 1], 0), repOf('target_forbidden')],
        ['port 0 by domain', domainConnect('example.com', 0), repOf('target_forbidden')],
      ];
      for (const [name, frame, rep] of cases) {
        const client = await RawClient.open(gateway.port);
        client.write(greeting(0x02), GOOD_AUTH, frame);
        assert.equal((await client.closed()).toString('hex'), `05020100${replyHex(rep)}`, name);
      }
      assert.equal(gateway.targets.length, 0, 'connect() is never called for a refused request');
      await assertServes(gateway, echo);
    },
  );
});

// ---------------------------------------------------------------- bad input

describe('socks5 listener: bad input is refused or closed, and the server goes on', () => {
  test('malformed greetings, sub-negotiations and requests', TEST_TIMEOUT, async () => {
    const echo = await startEcho();
    const gateway = await startGateway();
    const cases: Array<{ name: string; send: Array<Buffer | number[]>; answer: string }> = [
      { name: 'NMETHODS 0', send: [greeting()], answer: '05ff' },
      {
        name: 'NMETHODS 255 without 0x02',
        send: [greeting(...Array.from({ length: 255 }, (_, i) => (i === 2 ? 0x01 : i)))],
        answer: '05ff',
      },
      { name: 'no-auth and GSSAPI only', send: [greeting(0x00, 0x01)], answer: '05ff' },
      { name: 'SOCKS4 CONNECT', send: [[0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0x00]], answer: '' },
      {
        name: 'plain HTTP',
        send: [Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n')],
        answer: '',
      },
      { name: 'TLS ClientHello', send: [[0x16, 0x03, 0x01, 0x00, 0x05]], answer: '' },
      {
        name: 'sub-negotiation version 0x05',
        send: [greeting(0x02), [0x05, 0x01, 0x61, 0x01, 0x62]],
        answer: '05020101',
      },
      {
        name: 'username of length 0',
        send: [greeting(0x02), credentials('', PASS)],
        answer: '05020101',
      },
      {
        name: 'wrong password',
        send: [greeting(0x02), credentials(USER, 'nope')],
        answer: '05020101',
      },
      {
        name: 'request version 0x04',
        send: [greeting(0x02), GOOD_AUTH, [0x04, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80]],
        answer: '05020100',
      },
    ];
    for (const { name, send, answer } of cases) {
      const client = await RawClient.open(gateway.port);
      client.write(...send);
      assert.equal((await client.closed()).toString('hex'), answer, name);
      await gateway.settled();
    }
    const usernames = gateway.auths.map((auth) => auth.username);
    assert.deepEqual(usernames, [USER, USER], 'authenticate() saw only the frames that got there');
    assert.equal(gateway.targets.length, 0);
    await assertServes(gateway, echo);
  });

  test(
    'truncated frames at every stage: closed when the client ends, or at the deadline when it goes silent',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const handshakeTimeoutMs = 150;
      const gateway = await startGateway({ handshakeTimeoutMs });
      const opening = Buffer.concat([Buffer.from(greeting(0x02)), GOOD_AUTH]);
      const handshakes = [
        Buffer.concat([opening, ipv4Connect(echo)]),
        Buffer.concat([opening, domainConnect('localhost', echo)]),
        Buffer.concat([opening, request(0x01, 0x04, Array(16).fill(0), echo)]),
        // NMETHODS 255 with only part of the method bytes.
        Buffer.from(greeting(...Array(255).fill(0x02))),
      ];
      /** What the server answers to a prefix of `full`: its replies to the whole frames. */
      const expected = (full: Buffer, cut: number) => {
        if (full.length === 257) return '';
        const afterGreeting = 3;
        const afterAuth = afterGreeting + GOOD_AUTH.length;
        if (cut >= afterAuth) return '05020100';
        if (cut >= afterGreeting) return '0502';
        return '';
      };
      const runs: Array<Promise<void>> = [];
      for (const full of handshakes) {
        for (let cut = 1; cut < full.length; cut += full.length === 257 ? 64 : 1) {
          for (const ending of ['end', 'silent'] as const) {
            runs.push(
              (async () => {
                const client = await RawClient.open(gateway.port);
                const started = performance.now();
                client.write(full.subarray(0, cut));
                if (ending === 'end') client.socket.end();
                const got = (await client.closed()).toString('hex');
                const label = `${full.toString('hex').slice(0, 12)}… cut at ${cut}, ${ending}`;
                if (ending === 'silent') {
                  assert.equal(got, expected(full, cut), label);
                  // Timers may fire a millisecond early after rounding.
                  assert.ok(performance.now() - started >= handshakeTimeoutMs - 5, label);
                } else {
                  // The client may leave before authenticate() has answered.
                  assert.ok(expected(full, cut).startsWith(got), `${label}: got ${got}`);
                  if (cut >= 3 && full.length !== 257) assert.ok(got.startsWith('0502'), label);
                }
              })(),
            );
          }
        }
      }
      await Promise.all(runs);
      assert.equal(gateway.targets.length, 0, 'no truncated request reached connect()');
      assert.equal(gateway.tunnels, 0);
      await gateway.settled();
      await assertServes(gateway, echo);
    },
  );

  test(
    'a client that connects and says nothing is closed after handshakeTimeoutMs',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const handshakeTimeoutMs = 200;
      const gateway = await startGateway({ handshakeTimeoutMs });
      const client = await RawClient.open(gateway.port);
      const started = performance.now();
      assert.equal((await client.closed()).length, 0);
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= handshakeTimeoutMs - 5, `closed after ${elapsed} ms`);
      assert.ok(elapsed < handshakeTimeoutMs + 2_000, `closed after ${elapsed} ms`);
      await gateway.settled();
      await assertServes(gateway, echo);
    },
  );

  test(
    'a client that vanishes while connect() is pending: the upstream is destroyed, tunnel() never runs',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      let gate: Deferred<Destroyable> | null = null;
      let entered = deferred<void>();
      const gateway = await startGateway({
        async connect(_auth, target) {
          if (gate === null) return openTarget(target);
          entered.resolve();
          return gate.promise;
        },
      });
      for (const outcome of ['resolves', 'rejects'] as const) {
        gate = deferred<Destroyable>();
        entered = deferred<void>();
        const client = await RawClient.open(gateway.port);
        client.write(greeting(0x02), GOOD_AUTH, ipv4Connect(echo), Buffer.from('early'));
        await entered.promise;
        client.socket.destroy();
        await client.closed();
        await gateway.settled();
        if (outcome === 'resolves') {
          const destroyed = deferred<void>();
          gate.resolve({ destroy: () => destroyed.resolve() });
          await destroyed.promise;
        } else {
          gate.reject(ipcolaError('target_timeout'));
        }
        gate = null;
        // The server is still up and answers the next client.
        await assertServes(gateway, echo);
      }
      assert.equal(gateway.tunnels, 2, 'only the two assertServes() tunnels ran');
    },
  );
});

// ---------------------------------------------------------------- logs

describe('socks5 listener: logs', () => {
  test(
    'one child logger per connection with a connection id and the client; never the credentials',
    TEST_TIMEOUT,
    async () => {
      const echo = await startEcho();
      const lines: Array<Record<string, unknown>> = [];
      const raw: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) {
            raw.push(line);
            lines.push(JSON.parse(line) as Record<string, unknown>);
          }
          callback();
        },
      });
      let failConnect = false;
      const gateway = await startGateway({
        logger: createLogger('debug', sink),
        async connect(_auth, target) {
          if (failConnect) throw new Error('kaboom');
          return openTarget(target);
        },
      });
      const socket = await socksConnect(gateway.port, '127.0.0.1', echo);
      socket.end();
      await once(socket, 'close');
      const refused = await RawClient.open(gateway.port);
      refused.write(greeting(0x02), credentials(USER, `${PASS}-wrong`));
      await refused.closed();
      failConnect = true;
      const failing = await RawClient.open(gateway.port);
      failing.write(greeting(0x02), GOOD_AUTH, ipv4Connect(echo));
      await failing.closed();
      await gateway.settled();

      assert.ok(lines.length > 0);
      const ids = new Set<unknown>();
      for (const line of lines) {
        assert.equal(line.client, '127.0.0.1');
        assert.equal(typeof line.clientPort, 'number');
        assert.equal(typeof line.conn, 'string');
        ids.add(line.conn);
      }
      assert.equal(ids.size, 3, 'one connection id per connection');
      for (const text of raw) {
        assert.ok(!text.includes(PASS), 'a password reached the log');
        assert.ok(!text.includes(USER), 'a username reached the log');
      }
      const failure = lines.find((line) => line.level === 50);
      assert.ok(failure, 'the unexpected connect() error is logged at error level');
      assert.match(JSON.stringify(failure), /kaboom/);
      assert.ok(lines.some((line) => line.code === 'auth_failed'));
    },
  );
});
