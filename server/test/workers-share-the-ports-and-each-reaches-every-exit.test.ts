/**
 * WORKERS=2: one `npm start` runs two instances sharing the listening ports (Node's
 * cluster primary hands out the connections). The exit node's agent is attached to one
 * worker's hub, yet every customer connection reaches it, whichever worker took it; a
 * sticky session keeps its exit; SIGTERM stops both workers and the primary cleanly.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

const skip = needs('DATABASE_URL', 'REDIS_URL');

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let net: ProxyNetwork;

before(async () => {
  if (skip) return;
  scratch = await createScratchDatabase(required('DATABASE_URL'));
  net = await startProxyNetwork(
    [
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'de' },
    ],
    {
      DATABASE_URL: scratch.url,
      REDIS_URL: required('REDIS_URL'),
      TRUST_DECLARED_LOCATION: 'true',
      WORKERS: '2',
    },
  );
});

after(async () => {
  if (skip) return;
  await net?.close();
  await scratch?.drop();
});

async function viaConnect(params: string): Promise<string> {
  const basic = Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64');
  const answer = (
    await exchange(
      net.ports.proxy,
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: Basic ${basic}\r\n\r\n` +
        'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    )
  ).toString();
  return /\r\n\r\n(127\.0\.0\.\d+)$/.exec(answer)?.[1] ?? answer.split('\r\n')[0] ?? '';
}

test('two workers share the ports and every connection reaches the exits, whichever worker took it', {
  skip,
}, async () => {
  const joined = () =>
    new Set(
      net.server.logs.filter((line) => line.msg === 'joined the cluster').map((l) => l.instance),
    );
  await eventually(() => joined().size === 2, 60_000, 'both workers to join the cluster');
  assert.equal(
    net.server.logs.filter((line) => line.msg === 'starting workers').length,
    1,
    'one primary, which serves nothing itself',
  );

  // Each worker must know both exits (one is held by each, or both by one) before counting.
  const seen = new Map<string, number>();
  await eventually(
    async () => {
      seen.clear();
      for (let i = 0; i < 12; i++) {
        const exit = await viaConnect('-country-de');
        seen.set(exit, (seen.get(exit) ?? 0) + 1);
      }
      return [...seen.keys()].every((exit) => /^127\.0\.0\.1[23]$/.test(exit));
    },
    15_000,
    'every connection to reach an exit',
  );
  for (let i = 0; i < 24; i++) {
    const exit = await viaConnect('-country-de');
    assert.match(exit, /^127\.0\.0\.1[23]$/, `connection ${i} reached ${exit}`);
    seen.set(exit, (seen.get(exit) ?? 0) + 1);
  }
  assert.equal(seen.size, 2, 'both exits carry traffic');

  const sticky = new Set<string>();
  for (let i = 0; i < 8; i++) sticky.add(await viaConnect('-country-de-session-w1'));
  assert.equal(sticky.size, 1, `one exit for the session, saw ${[...sticky].join(', ')}`);

  const code = await net.server.stop('SIGTERM');
  assert.equal(code, 0, net.server.stderr());
  const stopped = net.server.logs.filter((line) => line.msg === 'stopped');
  assert.equal(stopped.length, 2, 'both workers stopped cleanly');
});
