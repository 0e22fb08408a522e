/**
 * Plain-HTTP forwarding never lets two client connections share a connection to an
 * origin: not two accounts, not two connections of one key. Against the real server and
 * real exit nodes, with undici as the customer's client, and an origin that answers by
 * connection identity: it numbers its TCP connections, and it runs an NTLM-like handshake
 * that authenticates the connection (not the request), so that a later request on that
 * connection without any header gets the user's private data. One client connection's
 * requests stay on one upstream connection (so such handshakes work), and when the
 * client connection closes, its upstream connections close, at the exit too.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { Client } from 'undici';
import { UPSTREAMS_PER_CLIENT } from '../src/gateway/forwarder.ts';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';
import { signedInApi } from './support/server-process.ts';

interface ConnectionState {
  id: number;
  /** The challenge sent to `user` on this connection, awaiting its answer. */
  pending?: { user: string; challenge: string };
  /** Who authenticated this connection. */
  user?: string;
}

interface Origin {
  server: Server;
  port: number;
  url: string;
  /** Numbers of the origin's connections that are open now. */
  open: Set<number>;
}

interface ConnectionAnswer {
  connection: number;
  /** The address the origin was reached from: the exit's. */
  exit: string;
}

/**
 * An origin that keeps connections alive for a minute (so that an idle pooled connection
 * would still be there to reuse) and answers:
 * - `/connection`: which of its connections the request came on, and from where;
 * - `/private`: `Authorization: NTLM negotiate:<user>` gets a 401 with a challenge for this
 *   connection; `NTLM authenticate:<challenge>` on the same connection authenticates it;
 *   without a header, an authenticated connection gets its user's private data, any
 *   other one a 401.
 */
async function startOrigin(): Promise<Origin> {
  const states = new WeakMap<Socket, ConnectionState>();
  const open = new Set<number>();
  let next = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const state = states.get(req.socket) as ConnectionState;
    const answer = (status: number, text: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(text);
    };
    if (req.url === '/connection') {
      const body: ConnectionAnswer = {
        connection: state.id,
        exit: req.socket.remoteAddress ?? '',
      };
      return answer(200, JSON.stringify(body));
    }
    const authorization = req.headers.authorization ?? '';
    if (authorization.startsWith('NTLM negotiate:')) {
      const challenge = randomBytes(8).toString('hex');
      state.pending = { user: authorization.slice('NTLM negotiate:'.length), challenge };
      return answer(401, 'answer the challenge', { 'www-authenticate': `NTLM ${challenge}` });
    }
    if (authorization.startsWith('NTLM authenticate:')) {
      const answered = authorization.slice('NTLM authenticate:'.length);
      if (!state.pending || state.pending.challenge !== answered) {
        return answer(401, 'no such challenge on this connection', { 'www-authenticate': 'NTLM' });
      }
      state.user = state.pending.user;
      delete state.pending;
      return answer(200, `welcome ${state.user}`);
    }
    if (state.user) return answer(200, `private data of ${state.user}`);
    return answer(401, 'who are you?', { 'www-authenticate': 'NTLM' });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    const id = ++next;
    states.set(socket, { id });
    open.add(id);
    socket.once('close', () => open.delete(id));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { server, port, url: `http://127.0.0.1:${port}`, open };
}

/**
 * One client connection to the gateway's HTTP proxy port, as a customer's HTTP client
 * holds it: undici's Client keeps exactly one connection (`connects` counts them, so a
 * test can see it stayed one), with the key's credentials on every request.
 */
class ProxyConnection {
  readonly client: Client;
  connects = 0;
  readonly #authorization: string;

  constructor(proxyPort: number, username: string, secret: string, pipelining = 1) {
    this.client = new Client(`http://127.0.0.1:${proxyPort}`, { pipelining });
    this.client.on('connect', () => {
      this.connects += 1;
    });
    this.#authorization = `Basic ${Buffer.from(`${username}:${secret}`).toString('base64')}`;
  }

  /** A GET on this connection; `headers` may carry other proxy credentials than the connection's. */
  async get(
    url: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const answer = await this.client.request({
      method: 'GET',
      path: url, // absolute form: this is a proxy
      headers: { 'proxy-authorization': this.#authorization, ...headers },
    });
    return { status: answer.statusCode, headers: answer.headers, body: await answer.body.text() };
  }

  async connection(
    origin: Origin,
    headers: Record<string, string> = {},
  ): Promise<ConnectionAnswer> {
    const answer = await this.get(`${origin.url}/connection`, headers);
    assert.equal(answer.status, 200, answer.body);
    return JSON.parse(answer.body) as ConnectionAnswer;
  }

  /** The NTLM-like handshake for `user`; both legs must land on one origin connection. */
  async authenticate(origin: Origin, user: string): Promise<void> {
    const challenged = await this.get(`${origin.url}/private`, {
      authorization: `NTLM negotiate:${user}`,
    });
    assert.equal(challenged.status, 401, challenged.body);
    const challenge = String(challenged.headers['www-authenticate']).slice('NTLM '.length);
    const welcomed = await this.get(`${origin.url}/private`, {
      authorization: `NTLM authenticate:${challenge}`,
    });
    assert.equal(welcomed.status, 200, welcomed.body);
    assert.equal(welcomed.body, `welcome ${user}`);
  }

  close(): Promise<void> {
    return this.client.destroy();
  }
}

describe('customers never share an upstream connection', () => {
  let net: ProxyNetwork;
  let origin: Origin;
  /** A key of a second account. */
  let otherKey: { id: string; secret: string };
  const opened: ProxyConnection[] = [];

  const connect = (key: { id: string; secret: string }, params: string, pipelining = 1) => {
    const connection = new ProxyConnection(
      net.ports.proxy,
      `${key.id}${params}`,
      key.secret,
      pipelining,
    );
    opened.push(connection);
    return connection;
  };

  before(async () => {
    origin = await startOrigin();
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
      { ip: '127.0.0.14', country: 'us' },
    ]);
    const other = await signedInApi(net.ports.api, `other-${Date.now()}@example.com`);
    otherKey = (await (await other('/v1/keys', { method: 'POST', body: '{}' })).json()) as {
      id: string;
      secret: string;
    };
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((connection) => connection.close()));
    // Whatever a test opened towards the origin closes with its client connections.
    await eventually(() => origin.open.size === 0, 10_000, 'the origin connections to close');
  });
  after(async () => {
    await net?.close();
    origin?.server.close();
  });

  test('two accounts forwarding to one origin through one exit never land on one origin connection', async () => {
    const first = connect(net.key, '-country-de');
    const second = connect(otherKey, '-country-de');
    const seen = { first: new Set<number>(), second: new Set<number>() };
    // Interleaved, so that an idle pooled connection of one would be there for the other.
    for (let round = 0; round < 4; round++) {
      for (const [name, connection] of [
        ['first', first],
        ['second', second],
      ] as const) {
        const answer = await connection.connection(origin);
        assert.equal(answer.exit, '127.0.0.12');
        seen[name].add(answer.connection);
      }
    }
    assert.deepEqual(
      [...seen.first].filter((id) => seen.second.has(id)),
      [],
    );
    // And each client connection's keep-alive requests stayed on one origin connection.
    assert.equal(seen.first.size, 1);
    assert.equal(seen.second.size, 1);
    assert.deepEqual([first.connects, second.connects], [1, 1]);
  });

  test("a second account never gets the first account's connection-authenticated answer", async () => {
    const alice = connect(net.key, '-country-de');
    await alice.authenticate(origin, 'alice');
    const mine = await alice.get(`${origin.url}/private`);
    assert.equal(mine.body, 'private data of alice', 'the handshake held on one connection');

    const stranger = connect(otherKey, '-country-de');
    for (let i = 0; i < 3; i++) {
      const theirs = await stranger.get(`${origin.url}/private`);
      assert.equal(theirs.status, 401, theirs.body);
      assert.doesNotMatch(theirs.body, /alice/);
    }
    // Alice's connection is still hers, and still authenticated.
    assert.equal((await alice.get(`${origin.url}/private`)).body, 'private data of alice');
  });

  test('two client connections of one key do not share an origin connection either', async () => {
    const one = connect(net.key, '-country-de');
    const two = connect(net.key, '-country-de');
    await one.authenticate(origin, 'alice');
    const first = await one.connection(origin);
    const second = await two.connection(origin);
    assert.notEqual(first.connection, second.connection);
    const theirs = await two.get(`${origin.url}/private`);
    assert.equal(theirs.status, 401, theirs.body);
  });

  test('one client connection carrying the requests of two accounts keeps their upstream connections apart', async () => {
    const shared = connect(net.key, '-country-de');
    const otherAccount = {
      'proxy-authorization': `Basic ${Buffer.from(`${otherKey.id}-country-de:${otherKey.secret}`).toString('base64')}`,
    };
    await shared.authenticate(origin, 'alice');
    const mine = await shared.connection(origin);
    const theirs = await shared.connection(origin, otherAccount);
    assert.notEqual(mine.connection, theirs.connection);
    const refused = await shared.get(`${origin.url}/private`, otherAccount);
    assert.equal(refused.status, 401, refused.body);
    assert.equal((await shared.get(`${origin.url}/private`)).body, 'private data of alice');
    assert.equal(shared.connects, 1, 'all of it on one client connection');
  });

  test('pipelined requests of one client connection wait for one origin connection instead of opening more', async () => {
    const pipelined = connect(net.key, '-country-de', 4);
    await pipelined.authenticate(origin, 'alice');
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => pipelined.get(`${origin.url}/private`)),
    );
    assert.deepEqual(
      answers.map((answer) => answer.body),
      Array(4).fill('private data of alice'),
    );
    const connections = await Promise.all(
      Array.from({ length: 4 }, () => pipelined.connection(origin)),
    );
    assert.equal(new Set(connections.map((answer) => answer.connection)).size, 1);
    assert.equal(pipelined.connects, 1, 'the client kept one connection to the gateway');
  });

  test('without a session each request may take another exit: one origin connection per exit', async () => {
    const roaming = connect(net.key, '-country-us');
    const byExit = new Map<string, Set<number>>();
    for (let i = 0; i < 8; i++) {
      const answer = await roaming.connection(origin);
      byExit.set(answer.exit, (byExit.get(answer.exit) ?? new Set()).add(answer.connection));
    }
    // Exit selection prefers the less loaded exit, so the second request took the other one.
    assert.deepEqual([...byExit.keys()].sort(), ['127.0.0.13', '127.0.0.14']);
    for (const [exit, connections] of byExit) assert.equal(connections.size, 1, exit);
  });

  test('a client connection keeps a bounded number of upstream connections, closing the least recently used', async () => {
    const many = await Promise.all(
      Array.from({ length: UPSTREAMS_PER_CLIENT + 1 }, () => startOrigin()),
    );
    try {
      const browsing = connect(net.key, '-country-de');
      const first = await browsing.connection(many[0] as Origin);
      for (const other of many.slice(1)) await browsing.connection(other);
      await eventually(
        () => !(many[0] as Origin).open.has(first.connection),
        10_000,
        'the least recently used upstream to close',
      );
      for (const other of many.slice(1)) assert.equal(other.open.size, 1);
      // That origin is reached again, on a new connection.
      const again = await browsing.connection(many[0] as Origin);
      assert.notEqual(again.connection, first.connection);
      await browsing.close();
      await eventually(
        () => many.every((other) => other.open.size === 0),
        10_000,
        'every upstream to close with its client connection',
      );
    } finally {
      for (const other of many) other.server.close();
    }
  });

  test('client connections that each make one request and leave do not wear the exit out', async () => {
    // Each leaves an upstream to close. Were those reset, the exit's HTTP/2 server would
    // answer GOAWAY after its allowance of 1,000 resets (plus 33 a second), and the node
    // would leave the pool: this many connections go past that allowance at any pace
    // faster than 15 a second.
    const connections = 1_500;
    const nodesDown = () => net.server.logs.filter((line) => line.msg === 'node down').length;
    const downBefore = nodesDown();
    const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
    const request =
      `GET ${origin.url}/connection HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n` +
      `Proxy-Authorization: Basic ${auth}\r\nConnection: close\r\n\r\n`;
    const statuses = new Map<string, number>();
    let started = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (started < connections) {
          started += 1;
          const answer = await exchangeText(net.ports.proxy, request);
          const status = answer.slice(0, answer.indexOf('\r\n'));
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    assert.deepEqual([...statuses], [['HTTP/1.1 200 OK', connections]]);
    assert.equal(nodesDown(), downBefore, 'the exit node stayed up');
    await eventually(
      async () => (await net.egressConnections(origin.port)).length === 0,
      10_000,
      'no connection from an exit to the origin',
    );
  });

  test('when the client connection closes, its upstream connections close at the origin and at the exit', async () => {
    const leaving = connect(net.key, '-country-de');
    const staying = connect(otherKey, '-country-de');
    const gone = (await leaving.connection(origin)).connection;
    const kept = (await staying.connection(origin)).connection;
    assert.ok(origin.open.has(gone));
    assert.equal((await net.egressConnections(origin.port)).length, 2);

    await leaving.close();
    await eventually(() => !origin.open.has(gone), 10_000, 'the upstream connection to close');
    await eventually(
      async () => (await net.egressConnections(origin.port)).length === 1,
      10_000,
      "the exit's connection to the origin to close",
    );
    // The other client's upstream is untouched and still carries its requests.
    assert.ok(origin.open.has(kept));
    assert.equal((await staying.connection(origin)).connection, kept);

    await staying.close();
    await eventually(
      async () => (await net.egressConnections(origin.port)).length === 0,
      10_000,
      'no connection from an exit to the origin',
    );
  });
});
