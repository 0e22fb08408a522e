/**
 * A node's exit IPs carry traffic only once the hub has seen a connection from each:
 * real agents prove theirs with the one-time nonce of their tunnel; an address never
 * proven, or proven from elsewhere, carries nothing; the same address offered by a
 * second node is refused for it; GET /v1/nodes shows each exit's state and place.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { performServerHandshake, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  EXIT_IP_HEADER,
  EXIT_PROOF_HEADER,
  EXIT_PROOF_PATH,
  HELLO_HEADER,
  TUNNEL_PATH,
  TUNNEL_UPGRADE_TOKEN,
} from '@ipcola/shared/protocol';
import { ProxyAgent, request } from 'undici';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

interface NodeView {
  id: string;
  exits: Array<{
    ip: string;
    state: string;
    public_ip: string | null;
    country: string | null;
    city: string | null;
    asn: number | null;
  }>;
}

describe('exit IPs carry traffic only once their node proves them', () => {
  let net: ProxyNetwork;
  let handmade: { session: ServerHttp2Session; nonce: string; nodeId: string } | undefined;

  const fetchVia = async (params: string) => {
    const dispatcher = new ProxyAgent({ uri: net.proxyUrl(params), proxyTunnel: false });
    try {
      const res = await request(`${net.target}/`, { dispatcher });
      return { status: res.statusCode, body: await res.body.text() };
    } finally {
      await dispatcher.close();
    }
  };
  const nodeExits = async (nodeId: string) => {
    const res = await net.api('/v1/nodes?limit=500');
    assert.equal(res.status, 200);
    const { items } = (await res.json()) as { items: NodeView[] };
    return items.find((node) => node.id === nodeId)?.exits ?? [];
  };
  /** A proof as an agent makes it, from `from`. */
  const prove = (nonce: string, ip: string, from: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port: net.ports.hub,
        path: EXIT_PROOF_PATH,
        method: 'POST',
        localAddress: from,
        agent: false,
        headers: { [EXIT_PROOF_HEADER]: nonce, [EXIT_IP_HEADER]: ip, 'Content-Length': 0 },
      });
      req.once('error', reject);
      req.once('response', async (res) => {
        let text = '';
        for await (const chunk of res) text += chunk;
        resolve({ status: res.statusCode ?? 0, text });
      });
      req.end();
    });

  /** A node made by hand: it dials from 127.0.0.1 and speaks HTTP/2 like an agent. */
  const handmadeNode = async (exitIps: string[], country: string) => {
    const created = await net.api('/v1/nodes', { method: 'POST', body: '{}' });
    const { id: nodeId, token } = (await created.json()) as { id: string; token: string };
    const hello = { exitIps, type: 'residential', maxStreams: 10, agentVersion: 'test', country };
    const upgrade = httpRequest({
      host: '127.0.0.1',
      port: net.ports.hub,
      path: TUNNEL_PATH,
      localAddress: '127.0.0.1',
      headers: {
        Connection: 'Upgrade',
        Upgrade: TUNNEL_UPGRADE_TOKEN,
        Authorization: `Bearer ${token}`,
        [HELLO_HEADER]: JSON.stringify(hello),
      },
    });
    upgrade.end();
    const [res, socket, head] = (await once(upgrade, 'upgrade')) as [
      IncomingMessage,
      Socket,
      Buffer,
    ];
    // The hub's HTTP/2 preface may have come with the 101.
    if (head.length > 0) socket.unshift(head);
    const nonce = res.headers[EXIT_PROOF_HEADER];
    assert.equal(typeof nonce, 'string', 'the hub hands out a proof nonce');
    return { session: performServerHandshake(socket), nonce: nonce as string, nodeId };
  };

  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
  });
  after(async () => {
    handmade?.session.destroy();
    await net?.close();
  });

  test('an exit its agent proved carries traffic, and the API shows it verified', async () => {
    const de = await fetchVia('-country-de');
    assert.deepEqual([de.status, de.body], [200, '127.0.0.12']);
    const res = await net.api('/v1/nodes?limit=500');
    const { items } = (await res.json()) as { items: NodeView[] };
    const exits = items.flatMap((node) => node.exits);
    assert.deepEqual(exits, [
      {
        ip: '127.0.0.12',
        state: 'verified',
        public_ip: null,
        country: 'de',
        region: null,
        city: null,
        asn: null,
        as_organization: null,
      },
    ]);
  });

  test('the same address offered by a second node is refused for it', async () => {
    // Announces 127.0.0.13 and also 127.0.0.12, which the first node holds.
    const { nodeId } = await net.startAgent({
      ip: '127.0.0.13',
      country: 'fr',
      args: ['--exit-ip', '127.0.0.12'],
    });
    await eventually(
      async () => (await nodeExits(nodeId)).every((exit) => exit.state !== 'pending'),
      30_000,
      "the second node's proofs",
    );
    const states = Object.fromEntries((await nodeExits(nodeId)).map((e) => [e.ip, e.state]));
    assert.deepEqual(states, { '127.0.0.13': 'verified', '127.0.0.12': 'duplicate' });
    for (let i = 0; i < 8; i++) {
      const fr = await fetchVia('-country-fr');
      assert.deepEqual([fr.status, fr.body], [200, '127.0.0.13'], 'never through the duplicate');
      const de = await fetchVia('-country-de');
      assert.deepEqual([de.status, de.body], [200, '127.0.0.12']);
    }
  });

  test('an exit IP never proven, or proven from another address, carries no traffic', async () => {
    // A node that announces two addresses (in Japan, which nobody else serves) and proves
    // neither itself: it dials from 127.0.0.1 and speaks HTTP/2 like an agent.
    handmade = await handmadeNode(['127.0.0.20', '127.0.0.21'], 'jp');
    const { nodeId } = handmade;

    await eventually(
      () => net.server.logs.some((line) => line.msg === 'node up' && line.nodeId === nodeId),
      30_000,
      'the node to be announced without its unproven exits',
    );
    assert.deepEqual(
      (await nodeExits(nodeId)).map((exit) => [exit.ip, exit.state, exit.country]),
      [
        ['127.0.0.20', 'pending', null],
        ['127.0.0.21', 'pending', null],
      ],
    );
    const refused = await fetchVia('-country-jp');
    assert.equal(refused.status, 503, 'no exit in jp carries traffic');

    const wrong = await prove(handmade.nonce, '127.0.0.20', '127.0.0.1');
    assert.equal(wrong.status, 409);
    assert.match(wrong.text, /saw the proof come from 127\.0\.0\.1/);
    const unknown = await prove('not-a-nonce', '127.0.0.21', '127.0.0.21');
    assert.equal(unknown.status, 404);
    assert.equal((await fetchVia('-country-jp')).status, 503);

    const right = await prove(handmade.nonce, '127.0.0.21', '127.0.0.21');
    assert.equal(right.status, 200);
    await eventually(
      async () =>
        JSON.stringify((await nodeExits(nodeId)).map((exit) => [exit.ip, exit.state])) ===
        JSON.stringify([
          ['127.0.0.20', 'mismatch'],
          ['127.0.0.21', 'verified'],
        ]),
      10_000,
      'the states to show',
    );
    const placed = (await nodeExits(nodeId)).find((exit) => exit.ip === '127.0.0.21');
    assert.equal(placed?.country, 'jp', 'a proven exit is placed and joins the pool');
    const regions = (await (await net.api('/v1/regions?country=jp')).json()) as {
      items: Array<{ exits: number }>;
    };
    assert.deepEqual(
      regions.items.map((region) => region.exits),
      [1],
      'the mismatched address is not counted',
    );
  });

  test('an address is refused to a second node while held, and free once its node left', async () => {
    const holder = handmade as NonNullable<typeof handmade>;
    const second = await handmadeNode(['127.0.0.21'], 'jp');
    try {
      const held = await prove(second.nonce, '127.0.0.21', '127.0.0.21');
      assert.deepEqual([held.status, held.text.trim()], [409, "127.0.0.21 is another node's exit"]);
    } finally {
      second.session.destroy();
    }
    holder.session.destroy();
    handmade = undefined;
    await eventually(
      () =>
        net.server.logs.some((line) => line.msg === 'node down' && line.nodeId === holder.nodeId),
      30_000,
      'the holder to leave',
    );
    const third = await handmadeNode(['127.0.0.21'], 'jp');
    try {
      const freed = await prove(third.nonce, '127.0.0.21', '127.0.0.21');
      assert.deepEqual([freed.status, freed.text.trim()], [200, '127.0.0.21 is verified']);
    } finally {
      third.session.destroy();
    }
  });
});
