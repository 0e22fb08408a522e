/**
 * The agent against hand-made hubs (node:http and node:http2 directly), so that each
 * hub behaviour, good or bad, can be staged on its own.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
  type IncomingHttpHeaders,
} from 'node:http2';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import {
  AGENT_INSTANCE_HEADER,
  AGENT_INSTANCE_PATTERN,
  ERROR_HEADER,
  EXIT_IP_HEADER,
  HELLO_HEADER,
  type NodeHello,
  parseHello,
  STREAM_LABEL_HEADER,
  TUNNEL_UPGRADE_TOKEN,
} from '@ipcola/shared/protocol';
import {
  backoffDelay,
  type ConnectOptions,
  connectToHub,
  type EgressTarget,
  type TunnelClient,
} from '../../src/tunnel/index.ts';

const HELLO: NodeHello = {
  exitIps: ['127.0.0.1', '0:0:0:0:0:0:0:1'],
  type: 'mobile',
  maxStreams: 8,
  agentVersion: '0.1.0',
};

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type UpgradeHandler = (req: IncomingMessage, socket: Socket, head: Buffer) => void;

/** An HTTP server whose Upgrade handling is the test's. */
async function fakeHub(onUpgrade: UpgradeHandler): Promise<number> {
  const server: Server = createServer();
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    cleanups.push(() => {
      socket.destroy();
    });
    onUpgrade(req, socket, head);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

function refuseWith(status: number, reason: string): UpgradeHandler {
  return (_req, socket) => {
    socket.end(
      `HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: ${reason.length + 1}\r\n\r\n${reason}\n`,
    );
  };
}

/** Resolves when the agent's SETTINGS reached the fake hub's session. */
const settled = new WeakMap<ClientHttp2Session, Promise<void>>();

/** Answers 101, then runs an HTTP/2 client over the socket, as the real hub does. */
function acceptAs(sessions: ClientHttp2Session[]): UpgradeHandler {
  return (_req, socket) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_UPGRADE_TOKEN}\r\n\r\n`,
      () => {
        const session = http2Connect('http://node.invalid', { createConnection: () => socket });
        session.on('error', () => {});
        settled.set(
          session,
          once(session, 'remoteSettings').then(() => undefined),
        );
        cleanups.push(() => session.destroy());
        sessions.push(session);
      },
    );
  };
}

function startAgent(port: number, overrides: Partial<ConnectOptions> = {}): TunnelClient {
  const agent = connectToHub({
    hub: `127.0.0.1:${port}`,
    token: 'node-token',
    hello: HELLO,
    openEgress: () => Promise.reject(new Error('no egress in this test')),
    idleTimeoutMs: 5_000,
    pingIntervalMs: 100,
    pingTimeoutMs: 5_000,
    reconnect: { initialMs: 8, maxMs: 32, stableAfterMs: 60_000, refusedRetryMs: 40 },
    ...overrides,
  });
  cleanups.push(() => agent.close());
  return agent;
}

/** A port that nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Collects `count` 'retrying' events. */
async function retries(agent: TunnelClient, count: number) {
  const seen: Array<{ attempt: number; delayMs: number; error: Error }> = [];
  while (seen.length < count) {
    const [event] = await once(agent, 'retrying');
    seen.push(event);
  }
  return seen;
}

/** Sends one CONNECT-like request from the fake hub and returns the response headers. */
async function ask(session: ClientHttp2Session, headers: Record<string, string>) {
  const stream: ClientHttp2Stream = session.request(headers, { endStream: false });
  stream.on('error', () => {});
  const [response] = (await once(stream, 'response')) as [IncomingHttpHeaders];
  return { stream, response };
}

describe('backoffDelay', () => {
  test('doubles from initialMs up to maxMs, jittered within [step/2, step]', () => {
    const options = { initialMs: 100, maxMs: 1_000 };
    const steps = [100, 200, 400, 800, 1_000, 1_000];
    steps.forEach((step, index) => {
      assert.equal(
        backoffDelay(index + 1, options, () => 0),
        step / 2,
      );
      assert.equal(
        backoffDelay(index + 1, options, () => 1),
        step,
      );
    });
  });
});

describe('the agent dials the hub', () => {
  test('it sends its token and hello in the Upgrade request', async () => {
    const seen: IncomingMessage[] = [];
    const sessions: ClientHttp2Session[] = [];
    const accept = acceptAs(sessions);
    const port = await fakeHub((req, socket, head) => {
      seen.push(req);
      accept(req, socket, head);
    });
    const agent = startAgent(port);
    await once(agent, 'connected');
    const [req] = seen;
    assert.ok(req);
    assert.equal(req.headers.authorization, 'Bearer node-token');
    // Newest first: a v1 hub (this fake one) picks the HTTP/2 tunnel it knows.
    assert.equal(req.headers.upgrade, 'ipcola-tunnel.v2, ipcola-tunnel.v1');
    const hello = parseHello(String(req.headers[HELLO_HEADER]));
    assert.ok(hello.ok);
    assert.deepEqual(hello.hello.exitIps, ['127.0.0.1', '::1']);
  });

  test('a refusal is reported and retried at the slow pace until close()', async () => {
    let attempts = 0;
    const refuse = refuseWith(401, 'the node token was not accepted');
    const port = await fakeHub((req, socket, head) => {
      attempts += 1;
      refuse(req, socket, head);
    });
    const agent = startAgent(port);
    const [rejected] = await once(agent, 'rejected');
    assert.deepEqual(rejected, {
      status: 401,
      message: 'hub refused the tunnel with 401: the node token was not accepted',
      hub: `127.0.0.1:${port}`,
    });
    for (const { delayMs } of await retries(agent, 2)) {
      assert.ok(delayMs >= 20 && delayMs <= 40, `refused retry after ${delayMs} ms`);
    }
    await agent.close();
    const after = attempts;
    assert.equal(agent.state, 'closed');
    // A retry that was due is cancelled: give the old timer more than its delay.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(attempts, after);
  });

  test('every dial of one agent carries the same instance id, another agent its own', async () => {
    const seen: string[] = [];
    const refuse = refuseWith(503, 'busy');
    const port = await fakeHub((req, socket, head) => {
      seen.push(String(req.headers[AGENT_INSTANCE_HEADER]));
      refuse(req, socket, head);
    });
    const first = startAgent(port);
    await retries(first, 2);
    await first.close();
    const second = startAgent(port);
    await once(second, 'retrying');
    await second.close();
    assert.equal(seen.length, 3);
    for (const instance of seen) assert.match(instance, AGENT_INSTANCE_PATTERN);
    assert.equal(seen[0], seen[1]);
    assert.notEqual(seen[2], seen[0]);
  });

  test('a 409 (another agent with this token replaced it) stops it: reported once, never dialled again', async () => {
    let attempts = 0;
    const refuse = refuseWith(409, 'another agent with this node token replaced this one');
    const port = await fakeHub((req, socket, head) => {
      attempts += 1;
      refuse(req, socket, head);
    });
    const agent = startAgent(port);
    let retried = false;
    agent.on('retrying', () => {
      retried = true;
    });
    const [[replaced]] = await Promise.all([once(agent, 'replaced'), once(agent, 'closed')]);
    assert.deepEqual(replaced, { message: 'another agent with this node token replaced this one' });
    assert.equal(agent.state, 'closed');
    assert.deepEqual([attempts, retried], [1, false]);
  });

  test('5xx answers back off exponentially, with jitter, up to the cap', async () => {
    const port = await fakeHub(refuseWith(503, 'busy'));
    const agent = startAgent(port);
    const seen = await retries(agent, 5);
    seen.forEach(({ attempt, delayMs }, index) => {
      const step = Math.min(32, 8 * 2 ** index);
      assert.equal(attempt, index + 1);
      assert.ok(delayMs >= step / 2 && delayMs <= step, `attempt ${attempt}: ${delayMs} ms`);
    });
  });

  test('a refused connection is retried', async () => {
    const server = createTcpServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const agent = startAgent(port);
    const [first] = await retries(agent, 1);
    assert.equal((first?.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED');
  });

  test('a hub that never answers is given up after dialTimeoutMs', async () => {
    const port = await fakeHub(() => {});
    const agent = startAgent(port, { dialTimeoutMs: 100 });
    const [first] = await retries(agent, 1);
    assert.match(String(first?.error.message), /did not answer within 100 ms/);
  });

  test('a hub that upgrades but never answers PINGs is left, and dialled again', async () => {
    let attempts = 0;
    const port = await fakeHub((_req, socket) => {
      attempts += 1;
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_UPGRADE_TOKEN}\r\n\r\n`,
      );
      // ...and then silence, like a hub behind a dead NAT mapping.
    });
    const agent = startAgent(port, { pingIntervalMs: 50, pingTimeoutMs: 200 });
    await once(agent, 'connected');
    const [{ error }] = await once(agent, 'disconnected');
    assert.match(String(error?.message), /no PING answer/);
    await once(agent, 'connected');
    assert.equal(attempts, 2);
  });

  test('a GOAWAY from the hub makes the agent connect again', async () => {
    const sessions: ClientHttp2Session[] = [];
    const port = await fakeHub(acceptAs(sessions));
    const agent = startAgent(port);
    await once(agent, 'connected');
    const first = sessions[0] as ClientHttp2Session;
    await settled.get(first);
    first.close();
    await once(agent, 'disconnected');
    await once(agent, 'connected');
    assert.equal(sessions.length, 2);
  });

  test('several hubs: a dead first address gives way to the next at once, no waiting', async () => {
    const dead = await closedPort();
    const sessions: ClientHttp2Session[] = [];
    const live = await fakeHub(acceptAs(sessions));
    const agent = startAgent(0, { hub: [`127.0.0.1:${dead}`, `127.0.0.1:${live}`] });
    let retried = false;
    agent.on('retrying', () => {
      retried = true;
    });
    const [connected] = await once(agent, 'connected');
    assert.equal(connected.hub, `127.0.0.1:${live}`);
    assert.equal(retried, false);
  });

  test('a GOAWAY moves the agent to the next hub at once, the lost one tried last', async () => {
    const first: ClientHttp2Session[] = [];
    const second: ClientHttp2Session[] = [];
    const a = await fakeHub(acceptAs(first));
    const b = await fakeHub(acceptAs(second));
    const agent = startAgent(0, { hub: [`127.0.0.1:${a}`, `127.0.0.1:${b}`] });
    assert.equal((await once(agent, 'connected'))[0].hub, `127.0.0.1:${a}`);
    const session = first[0] as ClientHttp2Session;
    await settled.get(session);
    session.close();
    const [[retrying], [connected]] = await Promise.all([
      once(agent, 'retrying'),
      once(agent, 'connected'),
    ]);
    assert.equal(retrying.delayMs, 0);
    assert.equal(connected.hub, `127.0.0.1:${b}`);
    assert.deepEqual([first.length, second.length], [1, 1]);
  });

  test('a hub that keeps dropping the agent is not dialled in a tight loop', async () => {
    const sessions: ClientHttp2Session[] = [];
    const accept = acceptAs(sessions);
    const port = await fakeHub((req, socket, head) => {
      const index = sessions.length;
      accept(req, socket, head);
      const closeOnceSettled = () => {
        const session = sessions[index];
        if (!session) return void setImmediate(closeOnceSettled);
        void settled.get(session)?.then(() => session.close());
      };
      closeOnceSettled();
    });
    const agent = startAgent(port);
    const [first, second, third] = await retries(agent, 3);
    assert.equal(first?.delayMs, 0, 'the first loss moves on at once');
    assert.ok(Number(second?.delayMs) >= 4, `then it waits: ${second?.delayMs} ms`);
    assert.ok(Number(third?.delayMs) >= 8, `longer: ${third?.delayMs} ms`);
  });

  test('every round of failures waits longer, across the whole list', async () => {
    const hubs = [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${await closedPort()}`];
    const dialled: string[] = [];
    const agent = startAgent(0, { hub: hubs });
    agent.on('connecting', ({ hub }) => dialled.push(hub));
    const seen = await retries(agent, 3);
    seen.forEach(({ attempt, delayMs }, index) => {
      const step = Math.min(32, 8 * 2 ** index);
      assert.equal(attempt, index + 1);
      assert.ok(delayMs >= step / 2 && delayMs <= step, `round ${attempt}: ${delayMs} ms`);
    });
    // Each round dials both addresses, in order.
    assert.deepEqual(dialled.slice(0, 6), [...hubs, ...hubs, ...hubs]);
  });

  test('a name with several addresses stands for each; the hub sees the name', async () => {
    const hosts: string[] = [];
    const sessions: ClientHttp2Session[] = [];
    const accept = acceptAs(sessions);
    const port = await fakeHub((req, socket, head) => {
      hosts.push(String(req.headers.host));
      accept(req, socket, head);
    });
    const asked: string[] = [];
    const agent = startAgent(0, {
      hub: `hubs.example:${port}`,
      // Nothing listens on 127.0.0.2 (the fake hub is bound to 127.0.0.1 only).
      lookup: async (host) => {
        asked.push(host);
        return [
          { address: '127.0.0.2', family: 4 },
          { address: '127.0.0.1', family: 4 },
        ];
      },
    });
    const [connected] = await once(agent, 'connected');
    assert.equal(connected.hub, `hubs.example:${port} (127.0.0.1)`);
    assert.deepEqual(hosts, [`hubs.example:${port}`]);
    assert.deepEqual(asked, ['hubs.example']);
  });

  test('a name that does not resolve is logged and the other hubs are dialled', async () => {
    const sessions: ClientHttp2Session[] = [];
    const live = await fakeHub(acceptAs(sessions));
    const warnings: Array<{ details: Record<string, unknown>; message: string }> = [];
    const agent = startAgent(0, {
      hub: ['nowhere.example:7000', `127.0.0.1:${live}`],
      lookup: async (host) => {
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      },
      logger: {
        debug: () => {},
        info: () => {},
        warn: (details, message) =>
          warnings.push({ details: details as Record<string, unknown>, message }),
        error: () => {},
      },
    });
    const [connected] = await once(agent, 'connected');
    assert.equal(connected.hub, `127.0.0.1:${live}`);
    const [warning] = warnings;
    assert.equal(warning?.message, 'the hub name did not resolve');
    assert.equal(warning?.details.hub, 'nowhere.example:7000');
  });

  test('options that cannot work throw at once', () => {
    const base = {
      token: 't',
      openEgress: () => Promise.reject(new Error('unused')),
      idleTimeoutMs: 0,
    };
    assert.throws(() => connectToHub({ ...base, hub: 'no-port', hello: HELLO }), TypeError);
    assert.throws(
      () => connectToHub({ ...base, hub: '127.0.0.1:1', hello: { ...HELLO, exitIps: [] } }),
      /invalid hello: exitIps must not be empty/,
    );
  });
});

describe('the agent serves the hub', () => {
  async function connected(openEgress: ConnectOptions['openEgress']) {
    const sessions: ClientHttp2Session[] = [];
    const port = await fakeHub(acceptAs(sessions));
    const agent = startAgent(port, { openEgress });
    await once(agent, 'connected');
    const session = sessions[0] as ClientHttp2Session;
    await settled.get(session);
    return { agent, session };
  }

  test('a CONNECT to an announced exit IP is spliced to the egress', async () => {
    const targets: EgressTarget[] = [];
    const { session } = await connected(async (target) => {
      targets.push(target);
      return new PassThrough(); // an echo
    });
    assert.equal(session.remoteSettings.maxConcurrentStreams, HELLO.maxStreams);
    const { stream, response } = await ask(session, {
      ':method': 'CONNECT',
      ':authority': '[2001:db8::1]:443',
      [EXIT_IP_HEADER]: '::1',
      [STREAM_LABEL_HEADER]: 'req-42',
    });
    assert.equal(response[':status'], 200);
    assert.deepEqual(targets, [
      { host: '2001:db8::1', port: 443, exitIp: '::1', streamLabel: 'req-42' },
    ]);
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.end('ping');
    await once(stream, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'ping');
  });

  test('other methods, unknown exit IPs and bad targets are refused without egress', async () => {
    let egressCalls = 0;
    const { session } = await connected(async () => {
      egressCalls += 1;
      return new PassThrough();
    });
    const get = await ask(session, { ':method': 'GET', ':path': '/' });
    assert.equal(get.response[':status'], 405);
    const foreignIp = await ask(session, {
      ':method': 'CONNECT',
      ':authority': 'example.com:443',
      [EXIT_IP_HEADER]: '10.9.9.9',
    });
    assert.equal(foreignIp.response[':status'], 400);
    assert.equal(foreignIp.response[ERROR_HEADER], 'exit_failed');
    const badTarget = await ask(session, {
      ':method': 'CONNECT',
      ':authority': 'example.com:99999',
      [EXIT_IP_HEADER]: '127.0.0.1',
    });
    assert.equal(badTarget.response[':status'], 400);
    assert.equal(badTarget.response[ERROR_HEADER], 'target_unreachable');
    assert.equal(egressCalls, 0);
  });

  test('a stream the hub cancels aborts the egress being opened', async () => {
    let requested!: (signal: AbortSignal) => void;
    const signalled = new Promise<AbortSignal>((resolve) => {
      requested = resolve;
    });
    const { session } = await connected((_target, signal) => {
      requested(signal);
      return new Promise((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason));
      });
    });
    const stream = session.request(
      { ':method': 'CONNECT', ':authority': 'example.com:443', [EXIT_IP_HEADER]: '127.0.0.1' },
      { endStream: false },
    );
    stream.on('error', () => {});
    const signal = await signalled;
    stream.close();
    await once(signal, 'abort');
    assert.ok(signal.aborted);
  });
});
