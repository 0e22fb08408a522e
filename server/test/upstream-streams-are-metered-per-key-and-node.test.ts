/**
 * Streams through an upstream-proxy exit are metered like agent streams: on the
 * customer's socket, both directions, every byte once, per key and per the upstream
 * node's id. The real gateway and the real upstream code, in process, over real sockets
 * to a real SOCKS5 server, so that the counters can be read straight from hot state.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import { createGateway, type Gateway } from '../src/gateway/index.ts';
import {
  createUsageMeter,
  parseUsageField,
  USAGE_GROUP,
  type UsageMeter,
} from '../src/metering/index.ts';
import { createMemoryHotState, type HotState } from '../src/store/index.ts';
import {
  createUpstreamDialer,
  createUpstreamExits,
  type UpstreamExits,
  type UpstreamNode,
} from '../src/upstream/index.ts';
import { quietLogger } from './support/engines.ts';
import { startSocks5Upstream, type UpstreamProxyServer } from './support/upstream-proxies.ts';

const KEY = { id: 'meteredkey', accountId: 'acct', scopes: ['proxy'], maxConcurrency: null };
const SECRET = 'the-secret';
const CREDENTIALS = { username: 'supplier', password: 'secret' };

async function listening(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/**
 * One customer connection: sends `handshake`, waits for `answerBytes` of answer, then
 * sends `payload`, half-closes and reads until the gateway closes.
 */
async function exchange(
  port: number,
  handshake: Buffer,
  answerBytes: number,
  payload: Buffer,
): Promise<{ client: Socket; reply: Buffer }> {
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  client.write(handshake);
  let reply = Buffer.alloc(0);
  const ended = new Promise<void>((resolve, reject) => {
    client.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk]);
      if (reply.length >= answerBytes && !client.writableEnded) client.end(payload);
    });
    client.on('end', resolve);
    client.on('error', reject);
  });
  await ended;
  return { client, reply };
}

describe('upstream-proxy streams are metered', () => {
  let target: Server;
  let targetPort: number;
  let upstream: UpstreamProxyServer;
  let hot: HotState;
  let usage: UsageMeter;
  let upstreams: UpstreamExits;
  let gateway: Gateway;
  let proxyPort: number;
  let socksPort: number;
  const node = (port: number): UpstreamNode => ({
    id: 'upnode1',
    type: 'datacenter',
    proxy: { protocol: 'socks5', host: '127.0.0.1', port, credentials: CREDENTIALS },
    exitIps: ['127.0.0.16'],
    location: { country: 'nl' },
  });

  before(async () => {
    // Answers every connection with 3000 bytes after reading the request to its end.
    target = createServer((socket) => {
      socket.resume();
      socket.on('end', () => socket.end(Buffer.alloc(3000, 0x61)));
    });
    targetPort = await listening(target);
    upstream = await startSocks5Upstream(CREDENTIALS, '127.0.0.16');
    hot = createMemoryHotState();
    usage = createUsageMeter(hot.counters, { pushIntervalMs: 60_000 });
    const policy = createExitPolicy({ allowTargets: ['127.0.0.1/32'] });
    upstreams = createUpstreamExits({
      dialer: createUpstreamDialer({ targetPolicy: policy, proxyPolicy: policy }),
      load: async () => [node(upstream.port)],
      probeIntervalMs: 60_000,
      logger: quietLogger,
    });
    gateway = createGateway({
      logger: quietLogger,
      sessions: hot.sessions,
      usage,
      verifyKey: async (id, secret) => (id === KEY.id && secret === SECRET ? KEY : null),
      openStream: (exit, to) => upstreams.openStream(exit.nodeId, exit.ip, to),
    });
    upstreams.on('node-up', (up) =>
      gateway.addNodeExits(
        up.id,
        up.exitIps.map((ip) => ({ ip, type: up.type, ...up.location })),
      ),
    );
    upstreams.on('node-down', ({ nodeId }) => gateway.removeNodeExits(nodeId));
    await upstreams.start();
    proxyPort = await listening(gateway.httpServer as unknown as Server);
    socksPort = await listening(gateway.socksServer);
  });

  after(async () => {
    upstreams.close();
    await gateway.close();
    await usage.close();
    for (const server of [gateway.httpServer, gateway.socksServer, target]) {
      (server as Server).close();
    }
    await upstream.close();
    await hot.close();
  });

  const counted = async () => {
    await usage.push();
    const totals: Record<string, number> = {};
    for (const [field, value] of Object.entries(await hot.counters.read(USAGE_GROUP))) {
      const parsed = parseUsageField(field);
      assert.ok(parsed, field);
      const name = `${parsed.keyId}|${parsed.nodeId}|${parsed.metric}`;
      totals[name] = (totals[name] ?? 0) + value;
    }
    return totals;
  };

  test('a CONNECT tunnel and a SOCKS5 tunnel count every customer-side byte once, for key and node', async () => {
    const auth = Buffer.from(`${KEY.id}-country-nl:${SECRET}`).toString('base64');
    const connectRequest = Buffer.from(
      `CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    );
    const viaConnect = await exchange(proxyPort, connectRequest, 1, Buffer.alloc(500, 0x62));
    assert.match(String(viaConnect.reply.subarray(0, 40)), /^HTTP\/1\.1 200 /);
    assert.equal(viaConnect.reply.subarray(-3000).toString(), 'a'.repeat(3000));

    const user = Buffer.from(`${KEY.id}-country-nl`);
    const socksRequest = Buffer.concat([
      Buffer.from([0x05, 0x01, 0x02]),
      Buffer.from([0x01, user.length]),
      user,
      Buffer.from([SECRET.length]),
      Buffer.from(SECRET),
      Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, targetPort >> 8, targetPort & 0xff]),
    ]);
    // Method choice, authentication status, then the 10-byte CONNECT reply.
    const viaSocks = await exchange(socksPort, socksRequest, 14, Buffer.alloc(700, 0x63));
    assert.deepEqual([...viaSocks.reply.subarray(0, 6)], [0x05, 0x02, 0x01, 0x00, 0x05, 0x00]);
    assert.equal(viaSocks.reply.subarray(-3000).toString(), 'a'.repeat(3000));

    const sent = viaConnect.client.bytesWritten + viaSocks.client.bytesWritten;
    const received = viaConnect.client.bytesRead + viaSocks.client.bytesRead;
    assert.deepEqual(await counted(), {
      [`${KEY.id}|upnode1|up`]: sent,
      [`${KEY.id}|upnode1|down`]: received,
      [`${KEY.id}|upnode1|requests`]: 2,
    });
  });
});
