/**
 * The server process is restarted under running exit nodes (SIGTERM, then a new process
 * on the same ports and DATA_DIR): the agents notice, reconnect with their own back-off,
 * their node tokens still verify, and customer traffic flows through the gateway again
 * from the same exit IPs.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

/** Agents retry at 0.25-0.5 s, then doubling: a slow start-up costs them a few rounds. */
const RECONNECT_DEADLINE_MS = 60_000;

let net: ProxyNetwork;
before(async () => {
  net = await startProxyNetwork([
    { ip: '127.0.0.12', country: 'de' },
    { ip: '127.0.0.13', country: 'us' },
    { ip: '127.0.0.14', country: 'us' },
  ]);
});
after(() => net?.close());

const basic = (params: string) =>
  `Basic ${Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64')}`;

/** A plain-HTTP request through the gateway; the whole answer. */
async function viaHttp(params: string): Promise<string> {
  const answer = await exchange(
    net.ports.proxy,
    `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\nConnection: close\r\n\r\n`,
  );
  return answer.toString();
}

/** The exit IP the whoami target saw, through a CONNECT tunnel. */
async function viaConnect(params: string): Promise<string> {
  const answer = await exchange(
    net.ports.proxy,
    `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(params)}\r\n\r\n` +
      'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
  );
  return answer.toString();
}

/** The exit IP the whoami target saw, through SOCKS5. */
async function viaSocks(params: string): Promise<string> {
  const user = Buffer.from(`${net.key.id}${params}`);
  const pass = Buffer.from(net.key.secret);
  const port = net.targetPort;
  const answer = await exchange(
    net.ports.socks,
    Buffer.concat([
      Buffer.from([0x05, 0x01, 0x02, 0x01, user.length]),
      user,
      Buffer.from([pass.length]),
      pass,
      Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]),
      Buffer.from('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'),
    ]),
  );
  assert.equal(answer.subarray(0, 14).toString('hex'), '0502010005000001000000000000');
  return answer.subarray(14).toString();
}

const exitIp = (answer: string) => /\r\n\r\n(127\.0\.0\.\d+)$/.exec(answer)?.[1];

async function regions(): Promise<Record<string, number>> {
  const res = await net.api('/v1/regions');
  if (res.status !== 200) return {};
  const { data } = (await res.json()) as { data: Array<{ country: string; exits: number }> };
  return Object.fromEntries(data.map((region) => [region.country, region.exits]));
}

test('after a server restart the exit nodes reconnect by themselves and traffic flows again', async (t) => {
  assert.deepEqual(await regions(), { de: 1, us: 2 });
  assert.equal(exitIp(await viaHttp('-country-de')), '127.0.0.12');
  const agentPids = [...net.agents.values()].map((agent) => agent.pid);
  const before = { pid: net.server.child.pid, ports: { ...net.ports } };

  const stopping = performance.now();
  await net.restartServer();
  const upAfterMs = performance.now() - stopping;
  assert.notEqual(net.server.child.pid, before.pid, 'a new server process');
  assert.deepEqual(net.server.ports, before.ports, 'the same ports');

  // No fixed wait: the regions the new process reports are the agents coming back.
  await eventually(
    async () => JSON.stringify(await regions()) === JSON.stringify({ de: 1, us: 2 }),
    RECONNECT_DEADLINE_MS,
    'all three exit nodes to reconnect to the new server',
  );
  const backAfterMs = performance.now() - stopping;
  t.diagnostic(
    `server up again after ${Math.round(upAfterMs)} ms, all exits back after ${Math.round(backAfterMs)} ms`,
  );
  // The log lines come through the child's stdout pipe, maybe after the API's answer.
  const nodesUp = () => net.server.logs.filter((line) => line.msg === 'node up').length;
  await eventually(() => nodesUp() >= 3, 5_000, "the new server's three 'node up' lines");
  assert.equal(nodesUp(), 3);
  // The same agent processes, still running: they reconnected, nobody restarted them.
  assert.deepEqual(
    [...net.agents.values()].map((agent) => agent.pid),
    agentPids,
  );
  for (const agent of net.agents.values()) assert.equal(agent.exitCode, null);

  // Every protocol works again, from the exit IPs of the targeted country.
  for (let i = 0; i < 3; i++) {
    assert.equal(exitIp(await viaHttp('-country-de')), '127.0.0.12');
    assert.equal(exitIp(await viaConnect('-country-de')), '127.0.0.12');
    assert.equal(exitIp(await viaSocks('-country-de')), '127.0.0.12');
  }
  const us = new Set<string | undefined>();
  for (let i = 0; i < 20 && us.size < 2; i++) us.add(exitIp(await viaHttp('-country-us')));
  assert.deepEqual([...us].sort(), ['127.0.0.13', '127.0.0.14']);

  // Sticky sessions start afresh on the new process and keep their exit.
  const sticky = new Set<string | undefined>();
  for (let i = 0; i < 5; i++) sticky.add(exitIp(await viaConnect('-country-us-session-after1')));
  assert.equal(sticky.size, 1);
  assert.match([...sticky][0] ?? '', /^127\.0\.0\.1[34]$/);
});
