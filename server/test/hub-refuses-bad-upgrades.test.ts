import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type IncomingHttpHeaders, type IncomingMessage, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { connectToHub } from '@ipcola/agent/tunnel';
import {
  HELLO_HEADER,
  NODE_ID_HEADER,
  type NodeHello,
  TUNNEL_MUX_UPGRADE_TOKEN,
  TUNNEL_PATH,
  TUNNEL_UPGRADE_OFFER,
  TUNNEL_UPGRADE_TOKEN,
} from '@ipcola/shared/protocol';
import {
  createHub,
  createHubServer,
  type Hub,
  type HubOptions,
  type NodeDownEvent,
} from '../src/hub/index.ts';

const HELLO: NodeHello = {
  exitIps: ['127.0.0.1', '::1'],
  type: 'datacenter',
  maxStreams: 64,
  agentVersion: '0.1.0',
};
const GOOD = {
  Authorization: 'Bearer good-token',
  [HELLO_HEADER]: JSON.stringify(HELLO),
};

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startHub(
  overrides: Partial<HubOptions> = {},
): Promise<{ hub: Hub; server: Server; port: number; ups: string[] }> {
  const hub = createHub({
    authenticate: async (token) => (token === 'good-token' ? { nodeId: 'node-1' } : null),
    pingIntervalMs: 100,
    pingTimeoutMs: 300,
    ...overrides,
  });
  const ups: string[] = [];
  hub.on('node-up', (node) => ups.push(node.nodeId));
  const server = createHubServer(hub);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    await hub.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { hub, server, port: (server.address() as AddressInfo).port, ups };
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The upgraded socket, for a 101. */
  readonly socket?: Socket;
}

/** Sends an Upgrade request by hand and returns the hub's answer. */
function upgrade(
  port: number,
  headers: Record<string, string>,
  options: { path?: string; method?: string; upgrade?: string | null } = {},
): Promise<Answer> {
  const upgradeHeaders =
    options.upgrade === null
      ? {}
      : { Connection: 'Upgrade', Upgrade: options.upgrade ?? TUNNEL_UPGRADE_TOKEN };
  const req = request({
    host: '127.0.0.1',
    port,
    path: options.path ?? TUNNEL_PATH,
    method: options.method ?? 'GET',
    agent: false,
    headers: { ...upgradeHeaders, ...headers },
  });
  return new Promise<Answer>((resolve, reject) => {
    req.on('error', reject);
    req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
      socket.on('error', () => {});
      cleanups.push(() => {
        socket.destroy();
      });
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', socket });
    });
    req.on('response', async (res: IncomingMessage) => {
      let body = '';
      for await (const chunk of res) body += chunk;
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
    });
    req.end();
  });
}

describe('the hub refuses what it should', () => {
  test('no token: 401 with a Bearer challenge', async () => {
    const { port, ups } = await startHub();
    const answer = await upgrade(port, { [HELLO_HEADER]: GOOD[HELLO_HEADER] });
    assert.equal(answer.status, 401);
    assert.match(String(answer.headers['www-authenticate']), /^Bearer/);
    assert.deepEqual(ups, []);
  });

  test('a wrong token: 401, and the agent reports it and retries slowly', async () => {
    const { port, ups } = await startHub();
    const agent = connectToHub({
      hub: `127.0.0.1:${port}`,
      token: 'wrong-token',
      hello: HELLO,
      openEgress: () => Promise.reject(new Error('unused')),
      idleTimeoutMs: 1_000,
      reconnect: { refusedRetryMs: 60_000 },
    });
    cleanups.push(() => agent.close());
    const [[rejected], [retrying]] = await Promise.all([
      once(agent, 'rejected'),
      once(agent, 'retrying'),
    ]);
    assert.equal(rejected.status, 401);
    assert.match(rejected.message, /token was not accepted/);
    assert.ok(retrying.delayMs >= 30_000 && retrying.delayMs <= 60_000);
    assert.equal(agent.state, 'waiting');
    assert.deepEqual(ups, []);
  });

  test('a bad hello: 400 naming the field', async () => {
    const { port, ups } = await startHub();
    const cases: Array<[string, RegExp]> = [
      [JSON.stringify({ ...HELLO, exitIps: ['127.0.0.1', 'not-an-ip'] }), /exitIps\[1\]/],
      [JSON.stringify({ ...HELLO, type: 'satellite' }), /type/],
      [JSON.stringify({ ...HELLO, maxStreams: 0 }), /maxStreams/],
      [JSON.stringify({ ...HELLO, country: 'Germany' }), /country/],
      // Two letters ISO never assigned: a node no gateway could ever target.
      [JSON.stringify({ ...HELLO, country: 'xx' }), /country .*assigned ISO 3166-1/],
      [JSON.stringify({ ...HELLO, exitIps: Array(300).fill('10.0.0.1') }), /at most 256/],
      [JSON.stringify([HELLO]), /object/],
      ['{not json', /not JSON/],
      [JSON.stringify({ ...HELLO, agentVersion: 'x'.repeat(12_300) }), /longer than/],
    ];
    for (const [hello, reason] of cases) {
      const answer = await upgrade(port, { ...GOOD, [HELLO_HEADER]: hello });
      assert.equal(answer.status, 400, hello.slice(0, 60));
      assert.match(answer.body, reason);
    }
    const missing = await upgrade(port, { Authorization: GOOD.Authorization });
    assert.equal(missing.status, 400);
    assert.deepEqual(ups, []);
  });

  test('a hello of another exit type than the node was registered with: 400 saying which', async () => {
    // Exits are priced by their type: a residential node may not announce datacenter exits.
    const { port, ups } = await startHub({
      authenticate: async (token) =>
        token === 'good-token' ? { nodeId: 'node-1', type: 'residential' } : null,
    });
    const answer = await upgrade(port, GOOD);
    assert.equal(answer.status, 400);
    assert.match(
      answer.body,
      /node node-1 is registered as residential, not datacenter: start the agent with --type residential/,
    );
    assert.deepEqual(ups, []);
    const same = await startHub({
      authenticate: async () => ({ nodeId: 'node-2', type: 'datacenter' }),
    });
    const accepted = await upgrade(same.port, GOOD);
    assert.equal(accepted.status, 101);
    accepted.socket?.destroy();
  });

  test('a malformed agent instance id: 400 naming the header', async () => {
    const { port, ups } = await startHub();
    for (const instance of ['short', 'not base64url!'.repeat(2), 'x'.repeat(65)]) {
      const answer = await upgrade(port, { ...GOOD, 'X-IPCola-Agent-Instance': instance });
      assert.equal(answer.status, 400, instance);
      assert.match(answer.body, /x-ipcola-agent-instance/);
    }
    assert.deepEqual(ups, []);
  });

  test('another path: 404; another protocol: 426; another method: 405', async () => {
    const { port } = await startHub();
    assert.equal((await upgrade(port, GOOD, { path: '/v1/other' })).status, 404);
    const wrongProtocol = await upgrade(port, GOOD, { upgrade: 'websocket' });
    assert.equal(wrongProtocol.status, 426);
    assert.equal(wrongProtocol.headers.upgrade, TUNNEL_UPGRADE_OFFER);
    assert.equal((await upgrade(port, GOOD, { method: 'POST' })).status, 405);
  });

  test('a plain request (no Upgrade) gets 426', async () => {
    const { port } = await startHub();
    const answer = await upgrade(port, {}, { upgrade: null });
    assert.equal(answer.status, 426);
    assert.equal(answer.headers.upgrade, TUNNEL_UPGRADE_OFFER);
  });

  test('when tokens cannot be checked: 503', async () => {
    const { port } = await startHub({
      authenticate: () => Promise.reject(new Error('database down')),
    });
    const answer = await upgrade(port, GOOD);
    assert.equal(answer.status, 503);
  });

  test('a closed hub refuses with 503', async () => {
    const { hub, port } = await startHub();
    await hub.close();
    assert.equal((await upgrade(port, GOOD)).status, 503);
  });

  test('a client that upgrades but never speaks HTTP/2 is dropped, never up', async () => {
    const { port, ups } = await startHub();
    const answer = await upgrade(port, GOOD);
    assert.equal(answer.status, 101);
    assert.equal(answer.headers.upgrade, TUNNEL_UPGRADE_TOKEN);
    assert.equal(answer.headers[NODE_ID_HEADER], 'node-1');
    assert.ok(answer.socket);
    // Nothing is sent: the hub gives up after its handshake deadline (pingTimeoutMs).
    answer.socket.resume();
    await once(answer.socket, 'close');
    assert.deepEqual(ups, []);
  });

  test('a v2 client that never sends its SETTINGS is dropped, never up', async () => {
    const { port, ups } = await startHub();
    const answer = await upgrade(port, GOOD, { upgrade: TUNNEL_UPGRADE_OFFER });
    assert.equal(answer.status, 101);
    assert.equal(answer.headers.upgrade, TUNNEL_MUX_UPGRADE_TOKEN);
    assert.ok(answer.socket);
    answer.socket.resume();
    await once(answer.socket, 'close');
    assert.deepEqual(ups, []);
  });

  test('a v2 node that breaks the framing is cut at once, and the hub takes it back later', async () => {
    const { hub, port } = await startHub({ pingTimeoutMs: 60_000 });
    const answer = await upgrade(port, GOOD, { upgrade: TUNNEL_UPGRADE_OFFER });
    assert.ok(answer.socket);
    answer.socket.resume();
    const settings = Buffer.alloc(17);
    settings.writeUInt32BE(8, 5);
    settings.writeUInt32BE(64, 9);
    settings.writeUInt32BE(1024 * 1024, 13);
    const up = once(hub, 'node-up');
    answer.socket.write(settings);
    await up;
    // A frame type no version has: the hub ends the node with a protocol error at once,
    // long before its 60 s PING deadline.
    const down = once(hub, 'node-down') as Promise<[NodeDownEvent]>;
    const closed = once(answer.socket, 'close');
    answer.socket.write(Buffer.from([99, 0, 0, 0, 0, 0, 0, 0, 0]));
    const [event] = await down;
    assert.equal(event.nodeId, 'node-1');
    assert.equal(event.reason, 'error');
    assert.match(String(event.error), /unknown frame type 99/);
    await closed;
    assert.deepEqual(hub.nodes(), []);
    const again = await upgrade(port, GOOD, { upgrade: TUNNEL_UPGRADE_OFFER });
    assert.equal(again.status, 101);
  });
});
