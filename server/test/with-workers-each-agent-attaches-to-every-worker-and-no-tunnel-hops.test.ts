/**
 * WORKERS=2 and one exit node: the agent dials the hub port once and ends up with a tunnel
 * on each worker (the hub tells it which worker of how many it reached, and a dial that
 * reaches a worker it holds is refused and made again). Every customer connection is then
 * served by the worker that took it through its own tunnel: the hop between instances,
 * counted in /metrics (ipcola_hop_streams_total), carries nothing. Killing one worker
 * leaves the agent serving through the other, and the worker started in its place gets a
 * tunnel of its own. (A worker cannot be drained alone: workers stop when the primary
 * says so, see process/index.ts; the agent's side of one worker's GOAWAY is tested with
 * the agent, tunnel-agent-attaches-to-every-worker-of-its-hub.test.ts.)
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { get } from 'node:http';
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
  net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
    DATABASE_URL: scratch.url,
    REDIS_URL: required('REDIS_URL'),
    TRUST_DECLARED_LOCATION: 'true',
    WORKERS: '2',
  });
});

after(async () => {
  if (skip) return;
  await net?.close();
  await scratch?.drop();
});

/** One CONNECT on a new connection (so that the workers take them in turn): the exit seen. */
async function viaConnect(): Promise<string> {
  const basic = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
  const answer = (
    await exchange(
      net.ports.proxy,
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: Basic ${basic}\r\n\r\n` +
        'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    )
  ).toString();
  return /\r\n\r\n(127\.0\.0\.\d+)$/.exec(answer)?.[1] ?? answer.split('\r\n')[0] ?? '';
}

/** The workers whose hub has announced the node (worker 1 logs without a worker field). */
function workersHolding(): Set<number> {
  return new Set(
    net.server.logs
      .filter((line) => line.msg === 'node up' && line.role === 'hub')
      .map((line) => (line.worker as number | undefined) ?? 1),
  );
}

/**
 * ipcola_hop_streams_total of whichever worker answers, on a new connection each time (the
 * workers take them in turn). A hop counts on both ends (out on one worker, in on the
 * other), so any scrape shows it.
 */
async function hopsOfOneWorker(): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    get({ host: '127.0.0.1', port: net.ports.api, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
  const counts = [...text.matchAll(/^ipcola_hop_streams_total\{side="(?:in|out)"\} (\d+)$/gm)];
  assert.equal(counts.length, 2, 'both sides of the hop counter are exported');
  return counts.reduce((sum, match) => sum + Number(match[1]), 0);
}

async function assertNoHops(when: string): Promise<void> {
  for (let i = 0; i < 6; i++) assert.equal(await hopsOfOneWorker(), 0, `a stream hopped ${when}`);
}

/** The worker processes of the primary. */
async function workerPids(): Promise<number[]> {
  const pid = net.server.child.pid as number;
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
  return children.trim().split(/\s+/).filter(Boolean).map(Number);
}

async function allConnectionsReachTheExit(count: number, when: string): Promise<void> {
  for (let i = 0; i < count; i++) {
    assert.equal(await viaConnect(), '127.0.0.12', `connection ${i} ${when}`);
  }
}

test('with two workers the agent holds a tunnel on each, and no customer tunnel hops between them', {
  skip,
}, async () => {
  await eventually(() => workersHolding().size === 2, 60_000, 'a tunnel on each worker');
  assert.deepEqual([...workersHolding()].sort(), [1, 2]);
  await allConnectionsReachTheExit(40, 'with a tunnel on each worker');
  await assertNoHops('with a tunnel on each worker');
});

test('killing one worker leaves the agent serving through the other, and the worker started in its place gets a tunnel', {
  skip,
}, async () => {
  const [killed] = await workerPids();
  assert.ok(killed !== undefined, 'a worker to kill');
  process.kill(killed, 'SIGKILL');
  await eventually(
    async () => !(await workerPids()).includes(killed),
    30_000,
    'the killed worker to be gone',
  );
  // The primary hands every connection to the worker left, which holds its own tunnel.
  await allConnectionsReachTheExit(20, 'with one worker left');
  await assertNoHops('with one worker left');

  // The primary starts a third worker in its place: the agent attaches to it too.
  await eventually(() => workersHolding().has(3), 60_000, 'a tunnel on the new worker');
  await allConnectionsReachTheExit(20, 'with the new worker');
  await assertNoHops('with the new worker');
});

test('SIGTERM drains both workers: the agent is told to go by each, and the server exits 0', {
  skip,
}, async () => {
  const code = await net.server.stop('SIGTERM');
  assert.equal(code, 0, net.server.stderr());
  const stopped = net.server.logs.filter((line) => line.msg === 'stopped');
  assert.equal(stopped.length, 2, 'both workers stopped cleanly');
});
