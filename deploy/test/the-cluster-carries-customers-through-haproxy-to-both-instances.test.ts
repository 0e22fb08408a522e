/**
 * `npm run cluster`'s topology, really running: two server instances on one PostgreSQL
 * database and Redis, HAProxy in front, three agents. Customers' HTTP proxy, SOCKS5 and
 * API traffic goes through the balancer to both instances, and the usage the API reports
 * is every byte the clients moved, whichever instance carried it.
 *
 * Any instance reaches any exit: `de`'s agent is on server-1's hub alone, and
 * `-country-de` through the balancer answers on every connection of every protocol, with
 * no retry, whichever instance took it; a sticky session keeps its exit on both.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  createScratchDatabase,
  eventually,
  needs,
  required,
} from '../../server/test/support/engines.ts';
import { exchange } from '../../server/test/support/raw-exchange.ts';
import { type Cluster, startCluster } from '../cluster/index.ts';
import { deleteIpcolaKeys, ownRedisDatabase } from './support.ts';

const run = promisify(execFile);

/** curl's answer: the status and the body (the target names the exit it was reached from). */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', [
    '-sS',
    '--max-time',
    '15',
    '-w',
    '\n%{http_code}',
    ...args,
  ]);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

describe('the cluster carries customers through HAProxy to both instances', {
  skip: needs('DATABASE_URL', 'REDIS_URL'),
}, () => {
  let cluster: Cluster;
  let dropDatabase: () => Promise<void>;
  const redisUrl = needs('DATABASE_URL', 'REDIS_URL') ? '' : ownRedisDatabase();

  before(async () => {
    const scratch = await createScratchDatabase(required('DATABASE_URL'));
    dropDatabase = scratch.drop;
    cluster = await startCluster({
      ports: 'free',
      databaseUrl: scratch.url,
      redisUrl,
      env: { USAGE_FLUSH_INTERVAL_MS: '300', LOG_LEVEL: 'info', AUTH_FAILURE_LIMIT: '5' },
    });
  });

  after(async () => {
    await cluster?.stop();
    await dropDatabase?.();
    if (redisUrl) await deleteIpcolaKeys(redisUrl);
  });

  test('HAProxy sees both instances up on every frontend', async () => {
    const states = await cluster.loadBalancer.states();
    for (const role of ['api', 'proxy', 'socks'] as const) {
      assert.deepEqual(states[role], { 'server-1': 'UP', 'server-2': 'UP' }, role);
    }
  });

  test('each agent is up on the hub of the instance the topology gives it', () => {
    for (const agent of cluster.agents) {
      assert.ok(cluster.instance(agent.spec.instance).hasNode(agent.nodeId), agent.spec.name);
      for (const other of cluster.instances.filter((i) => i.name !== agent.spec.instance)) {
        assert.ok(!other.hasNode(agent.nodeId), `${agent.spec.name} is not on ${other.name}`);
      }
    }
  });

  /** What an instance counts of connections it carried, by protocol (its /metrics). */
  const carried = async (instance: string): Promise<Record<string, number>> => {
    const { ports } = cluster.instance(instance);
    const text = await (await fetch(`http://127.0.0.1:${ports.api}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const match of text.matchAll(
      /^ipcola_proxy_connections_total\{protocol="(\w+)"\} (\d+)$/gm,
    )) {
      counts[match[1] ?? ''] = Number(match[2]);
    }
    return counts;
  };
  const carriedByEach = async () =>
    Object.fromEntries(
      await Promise.all(cluster.instances.map(async (i) => [i.name, await carried(i.name)])),
    ) as Record<string, Record<string, number>>;

  /** The exit each protocol reached through the balancer, one connection each. */
  const through = {
    forward: (params: string) => curl(['-x', cluster.proxyUrl(params), cluster.target.url]),
    connect: (params: string) => curl(['-p', '-x', cluster.proxyUrl(params), cluster.target.url]),
    socks5: (params: string) =>
      curl([
        '--socks5-hostname',
        `127.0.0.1:${cluster.loadBalancer.ports.socks}`,
        '-U',
        `${cluster.customer.key.id}${params}:${cluster.customer.key.secret}`,
        cluster.target.url,
      ]),
  };
  const COUNTED = { forward: 'http', connect: 'connect', socks5: 'socks5' } as const;

  // Any instance reaches any exit: de's agent is on server-1's hub alone, and every
  // connection through the balancer reaches it, whichever instance took it, with no retry.
  for (const protocol of ['forward', 'connect', 'socks5'] as const) {
    test(`-country-de answers from the de exit on every ${protocol} connection through the balancer`, async () => {
      const before = await carriedByEach();
      for (let request = 0; request < 6; request += 1) {
        const answer = await through[protocol]('-country-de');
        assert.equal(answer.status, 200, answer.body);
        assert.equal(answer.body, 'you reached this target from 127.0.0.12\n');
      }
      const after = await carriedByEach();
      for (const instance of cluster.instances) {
        const counted = COUNTED[protocol];
        const more =
          (after[instance.name]?.[counted] ?? 0) - (before[instance.name]?.[counted] ?? 0);
        // leastconn takes turns among equally loaded servers: six connections reach both.
        assert.ok(more > 0, `${instance.name} carried ${more} of them`);
      }
    });
  }

  test('-country-us answers from a us exit on every connection through the balancer', async () => {
    for (const protocol of ['forward', 'connect', 'socks5'] as const) {
      for (let request = 0; request < 4; request += 1) {
        const answer = await through[protocol]('-country-us');
        assert.equal(answer.status, 200, answer.body);
        assert.match(answer.body, /^you reached this target from 127\.0\.0\.1[34]\n$/);
      }
    }
  });

  test('a sticky session keeps its exit on both instances and through the balancer', async () => {
    const session = `-country-us-session-both${Date.now()}`;
    const exits = new Set<string>();
    // Pinned through server-1, then used through server-2 and through the balancer.
    for (const via of [...cluster.instances.map((i) => i.ports), cluster.loadBalancer.ports]) {
      for (let request = 0; request < 3; request += 1) {
        const answer = await curl(['-x', cluster.proxyUrl(session, via), cluster.target.url]);
        assert.equal(answer.status, 200, answer.body);
        exits.add(answer.body);
      }
    }
    assert.equal(exits.size, 1, [...exits].join(', '));
  });

  test('the de exit answers through the instance its agent dialled', async () => {
    const server1 = cluster.instance('server-1');
    for (let request = 0; request < 3; request += 1) {
      const answer = await curl([
        '-x',
        cluster.proxyUrl('-country-de', server1.ports),
        cluster.target.url,
      ]);
      assert.equal(answer.status, 200, answer.body);
      assert.equal(answer.body, 'you reached this target from 127.0.0.12\n');
    }
  });

  test('a stopped agent takes its exit away, and it is back when the agent starts again', async () => {
    const server1 = cluster.instance('server-1');
    const agent = cluster.agent('agent-de');
    assert.equal(await agent.stop('SIGTERM'), 0, 'the agent drains and exits 0');
    await eventually(() => !server1.hasNode(agent.nodeId), 10_000, 'the hub to see it leave');
    const gone = await curl([
      '-x',
      cluster.proxyUrl('-country-de', server1.ports),
      cluster.target.url,
    ]);
    assert.equal(gone.status, 503);
    assert.match(gone.body, /no_exit_available/);
    agent.start();
    await cluster.agentsUp();
    const back = await curl([
      '-x',
      cluster.proxyUrl('-country-de', server1.ports),
      cluster.target.url,
    ]);
    assert.equal(back.body, 'you reached this target from 127.0.0.12\n');
  });

  test('the API through the balancer answers with the customer key, on the shared database', async () => {
    const ready = await fetch(`http://127.0.0.1:${cluster.loadBalancer.ports.api}/readyz`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as { checks: Record<string, { engine: string }> };
    assert.equal(body.checks.database?.engine, 'postgres');
    assert.equal(body.checks.hot_state?.engine, 'redis');
    // Several calls: whichever instance answers, the key and its account are the same.
    for (let call = 0; call < 4; call += 1) {
      const keys = await cluster.api('/v1/keys');
      assert.equal(keys.status, 200);
      const { items } = (await keys.json()) as { items: Array<{ id: string }> };
      assert.deepEqual(
        items.map((key) => key.id),
        [cluster.customer.key.id],
      );
    }
  });

  test('behind HAProxy each customer keeps its own address: a password-less range admits only its clients', async () => {
    // HAProxy's PROXY header (send-proxy-v2) carries the client's address to the
    // instances; without it every client would be the balancer (127.0.0.60).
    const made = await cluster.api('/v1/keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'office', passwordless_cidrs: ['127.0.0.77/32'] }),
    });
    assert.equal(made.status, 201, await made.clone().text());
    const office = (await made.json()) as { id: string };
    const from = (address: string, protocol: 'http' | 'socks5h') =>
      curl([
        '--interface',
        address,
        ...(protocol === 'http'
          ? ['-x', `http://${office.id}-country-de:@127.0.0.1:${cluster.loadBalancer.ports.proxy}`]
          : ['--socks5-hostname', `127.0.0.1:${cluster.loadBalancer.ports.socks}`]),
        cluster.target.url,
      ]).catch((error: { stdout?: string }) => ({ status: 0, body: String(error.stdout ?? '') }));
    // Several times: HAProxy spreads them over both instances.
    for (let i = 0; i < 4; i += 1) {
      assert.deepEqual(await from('127.0.0.77', 'http'), {
        status: 200,
        body: 'you reached this target from 127.0.0.12\n',
      });
      assert.equal((await from('127.0.0.78', 'http')).status, 407);
      assert.equal((await from('127.0.0.77', 'socks5h')).status, 200);
      assert.equal((await from('127.0.0.78', 'socks5h')).status, 0, 'SOCKS5 refused');
    }
  });

  test("behind HAProxy one client's failed log-ins lock out that client only", async () => {
    // The API's frontend balances HTTP and sets X-Forwarded-For (the instances' TRUST_PROXY).
    const login = async (from: string, password: string) =>
      (
        await curl([
          '--interface',
          from,
          '-H',
          'content-type: application/json',
          // A client's own X-Forwarded-For is dropped by the balancer.
          '-H',
          'x-forwarded-for: 127.0.0.99',
          '--data',
          JSON.stringify({ email: cluster.customer.email, password }),
          `http://127.0.0.1:${cluster.loadBalancer.ports.api}/v1/auth/login`,
        ])
      ).status;
    for (let i = 0; i < 5; i += 1) assert.equal(await login('127.0.0.87', `wrong-${i}`), 401);
    // Counted in Redis across both instances: past the limit every guess is refused,
    // whichever instance takes it.
    for (let i = 0; i < 4; i += 1) assert.equal(await login('127.0.0.87', `again-${i}`), 429);
    // Another customer behind the same balancer is not: it is not the balancer's address
    // that was blocked.
    assert.equal(await login('127.0.0.88', cluster.customer.password), 200);
  });

  test('the usage API reports every byte clients moved through either instance', async () => {
    // A key of its own: nothing moved before it can still be on its way to the database.
    const made = await cluster.api('/v1/keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'usage', scopes: ['proxy'] }),
    });
    assert.equal(made.status, 201);
    const { id, secret } = (await made.json()) as { id: string; secret: string };
    const authority = `127.0.0.1:${cluster.target.port}`;
    const auth = Buffer.from(`${id}-country-us:${secret}`).toString('base64');
    let up = 0;
    let down = 0;
    const before = await carriedByEach();
    for (let request = 0; request < 6; request += 1) {
      const bytes =
        `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\n` +
        `Proxy-Authorization: Basic ${auth}\r\nConnection: close\r\n\r\n`;
      const reply = await exchange(cluster.loadBalancer.ports.proxy, bytes);
      assert.match(reply.toString('latin1'), /^HTTP\/1\.1 200 /);
      up += Buffer.byteLength(bytes);
      down += reply.length;
    }
    // Which instance carried a request is what each counted, not which exit answered:
    // either instance reaches either us exit.
    const after = await carriedByEach();
    for (const instance of cluster.instances) {
      const more = (after[instance.name]?.http ?? 0) - (before[instance.name]?.http ?? 0);
      assert.ok(more > 0, `${instance.name} carried ${more} of them`);
    }
    let last = { bytes_up: 0, bytes_down: 0, requests: 0 };
    await eventually(
      async () => {
        last = await totals(cluster, id);
        return last.requests >= 6;
      },
      20_000,
      'the usage of six requests to be flushed',
    );
    assert.deepEqual(last, { bytes_up: up, bytes_down: down, requests: 6 });
  });

  test('every metric the Grafana dashboard charts is one the instances export', async () => {
    // One refusal, so that the refusal counter has a series to export.
    const refused = await curl([
      '-x',
      cluster.proxyUrl('-country-us').replace(/:[^:@]+@/, ':wrong@'),
      cluster.target.url,
    ]);
    assert.equal(refused.status, 407);
    const dashboard = await readFile(
      new URL('../grafana/ipcola-dashboard.json', import.meta.url),
      'utf8',
    );
    const charted = new Set(
      [...dashboard.matchAll(/\b(ipcola_[a-z0-9_]+)\{/g)].map((match) =>
        (match[1] ?? '').replace(/_bucket$/, ''),
      ),
    );
    assert.ok(charted.size >= 10, `${charted.size} metrics charted`);
    const exported = new Set<string>();
    for (const instance of cluster.instances) {
      // Loopback clients may read /metrics without METRICS_TOKEN.
      const text = await (await fetch(`http://127.0.0.1:${instance.ports.api}/metrics`)).text();
      for (const match of text.matchAll(/^# TYPE (\S+) /gm)) exported.add(match[1] ?? '');
    }
    assert.deepEqual(
      [...charted].filter((name) => !exported.has(name)),
      [],
    );
  });
});

async function totals(cluster: Cluster, keyId: string) {
  const answer = await cluster.api(`/v1/usage?key_id=${keyId}`);
  assert.equal(answer.status, 200);
  return (
    (await answer.json()) as { totals: { bytes_up: number; bytes_down: number; requests: number } }
  ).totals;
}
