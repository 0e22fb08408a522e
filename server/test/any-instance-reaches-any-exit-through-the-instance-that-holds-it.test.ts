/**
 * Two server processes share one PostgreSQL database and one Redis. The exit nodes'
 * agents are attached to instance A only; customers of instance B still reach every
 * exit (over the hop to A), keep their sticky session's exit whichever instance they
 * reach, see the nodes online through B's API, and delete a node through B. When A is
 * killed, B stops offering its exits within seconds instead of failing opens for ever.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

const skip = needs('DATABASE_URL', 'REDIS_URL');

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let net: ProxyNetwork;
let b: ServerProcess & { ports: Record<'api' | 'proxy' | 'socks' | 'hub', number> };
let dataDirB: string;

before(async () => {
  if (skip) return;
  scratch = await createScratchDatabase(required('DATABASE_URL'));
  const shared = { DATABASE_URL: scratch.url, REDIS_URL: required('REDIS_URL') };
  net = await startProxyNetwork(
    [
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
    ],
    { ...shared, TRUST_DECLARED_LOCATION: 'true' },
  );
  dataDirB = await mkdtemp(path.join(tmpdir(), 'ipcola-instance-b-'));
  b = (await startServer(
    serverEnv({ DATA_DIR: dataDirB, ...shared, TRUST_DECLARED_LOCATION: 'true' }),
  )) as typeof b;
});

after(async () => {
  if (skip) return;
  await b?.stop();
  await net?.close();
  await rm(dataDirB, { recursive: true, force: true });
  await scratch?.drop();
});

const basic = (params: string) =>
  `Basic ${Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64')}`;

/** The exit IP the whoami target saw through a CONNECT tunnel on `proxyPort`, or the status line. */
async function viaConnect(proxyPort: number, params: string): Promise<string> {
  const answer = (
    await exchange(
      proxyPort,
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\n\r\n` +
        'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    )
  ).toString();
  return /\r\n\r\n(127\.0\.0\.\d+)$/.exec(answer)?.[1] ?? answer.split('\r\n')[0] ?? '';
}

/** The same through a plain forwarded request. */
async function viaForward(proxyPort: number, params: string): Promise<string> {
  const answer = (
    await exchange(
      proxyPort,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\nConnection: close\r\n\r\n`,
    )
  ).toString();
  return /\r\n\r\n(127\.0\.0\.\d+)$/.exec(answer)?.[1] ?? answer.split('\r\n')[0] ?? '';
}

async function regionsOn(apiPort: number): Promise<Record<string, number>> {
  const res = await fetch(`http://127.0.0.1:${apiPort}/v1/regions`, {
    headers: { authorization: `Bearer ${net.key.id}.${net.key.secret}` },
  });
  if (res.status !== 200) return {};
  const { data } = (await res.json()) as { data: Array<{ country: string; exits: number }> };
  return Object.fromEntries(data.map((region) => [region.country, region.exits]));
}

test('a customer of the instance without the agents reaches every exit, sticky sessions included', {
  skip,
}, async () => {
  await eventually(
    async () => JSON.stringify(await regionsOn(b.ports.api)) === JSON.stringify({ de: 1, us: 1 }),
    15_000,
    "instance B to list instance A's exits",
  );
  for (let i = 0; i < 3; i++) {
    assert.equal(await viaConnect(b.ports.proxy, '-country-de'), '127.0.0.12');
    assert.equal(await viaForward(b.ports.proxy, '-country-us'), '127.0.0.13');
  }
  const socket = await net.socks('-country-de');
  assert.ok(socket, 'SOCKS5 through A works as before');
  socket.socket.destroy();

  // One session, alternating instances: one exit all along.
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const port = i % 2 === 0 ? net.ports.proxy : b.ports.proxy;
    seen.add(await viaConnect(port, '-session-hop1'));
  }
  assert.equal(seen.size, 1, `one exit for the session, saw ${[...seen].join(', ')}`);
  assert.match([...seen][0] ?? '', /^127\.0\.0\.1[23]$/);
});

test("B's API shows A's nodes online with their proven exits, and deleting one through B cuts it on A", {
  skip,
}, async () => {
  const listed = await fetch(`http://127.0.0.1:${b.ports.api}/v1/nodes`, {
    headers: { authorization: `Bearer ${net.key.id}.${net.key.secret}` },
  });
  // The key belongs to the customer; the nodes to the same account (the test network's).
  assert.equal(listed.status, 200);
  const { items: data } = (await listed.json()) as {
    items: Array<{ id: string; online: boolean; exits: Array<{ ip: string; state: string }> }>;
  };
  assert.equal(data.length, 2);
  for (const node of data) {
    assert.equal(node.online, true);
    assert.equal(node.exits[0]?.state, 'verified');
  }
  const de = data.find((node) => node.exits[0]?.ip === '127.0.0.12');
  assert.ok(de);
  const deleted = await fetch(`http://127.0.0.1:${b.ports.api}/v1/nodes/${de.id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${net.key.id}.${net.key.secret}` },
  });
  assert.equal(deleted.status, 204);
  await eventually(
    () => net.server.logs.some((line) => line.msg === 'node down' && line.nodeId === de.id),
    10_000,
    'instance A to cut the deleted node',
  );
  await eventually(
    async () => JSON.stringify(await regionsOn(b.ports.api)) === JSON.stringify({ us: 1 }),
    10_000,
    'the deleted exit to leave B',
  );
  assert.match(await viaConnect(b.ports.proxy, '-country-de'), /^HTTP\/1\.1 503 no_exit_available/);
});

test('the hop between instances refuses a stream without the shared secret', { skip }, async () => {
  const joined = b.logs.find((line) => line.msg === 'joined the cluster');
  assert.ok(typeof joined?.peer === 'string');
  const session = connect(`http://${joined.peer}`);
  try {
    for (const secret of [undefined, 'd3Jvbmc', Buffer.alloc(32).toString('base64url')]) {
      const stream = session.request({
        ':method': 'CONNECT',
        ':authority': `127.0.0.1:${net.targetPort}`,
        'x-ipcola-node-id': 'any',
        'x-ipcola-exit-ip': '127.0.0.12',
        ...(secret ? { 'x-ipcola-peer': secret } : {}),
      });
      const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
      assert.equal(headers[':status'], 403);
      stream.destroy();
    }
  } finally {
    session.destroy();
  }
});

test('when the instance holding the agents is killed, the other stops offering their exits', {
  skip,
}, async () => {
  assert.equal(await viaConnect(b.ports.proxy, '-country-us'), '127.0.0.13');
  await net.server.stop('SIGKILL');
  const killed = performance.now();
  await eventually(
    async () => JSON.stringify(await regionsOn(b.ports.api)) === JSON.stringify({}),
    15_000,
    "B to drop the dead instance's exits",
  );
  const goneAfterMs = performance.now() - killed;
  // Meanwhile opens fail with a code a client retries on, never hang.
  assert.match(await viaConnect(b.ports.proxy, '-country-us'), /^HTTP\/1\.1 503 no_exit_available/);
  assert.ok(goneAfterMs < 15_000, `gone after ${Math.round(goneAfterMs)} ms`);
});
