/**
 * Losing an instance behind the balancer, with `npm run cluster`'s topology: the one
 * holding the `de` agent killed with SIGKILL, then both stopped with SIGTERM and started
 * again one after the other under a steady stream of requests, with no step in HAProxy:
 * the product's drain (and HAProxy's retries) are the runbook.
 *
 * Any instance reaches any exit, and each agent names both hubs (its home one first), so
 * every request has a way to every exit whichever instance is down. What clients see is
 * asserted (every answer a 200 from an exit of the country asked for), that the agents
 * move within seconds, that a sticky session keeps its exit, and that the usage the API
 * reports is every byte the clients moved.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createScratchDatabase,
  eventually,
  needs,
  required,
} from '../../server/test/support/engines.ts';
import { exchange } from '../../server/test/support/raw-exchange.ts';
import { allUp, type Cluster, startCluster } from '../cluster/index.ts';
import { deleteIpcolaKeys, ownRedisDatabase } from './support.ts';

/** The exits of each country the agents serve. */
const EXITS: Record<'de' | 'us', readonly string[]> = {
  de: ['127.0.0.12'],
  us: ['127.0.0.13', '127.0.0.14'],
};

interface Moved {
  up: number;
  down: number;
  requests: number;
  /** Answers that were not a 200 from an exit of the country asked for, with when they came. */
  failures: string[];
  exits: Set<string>;
}

/**
 * One forwarded request through the balancer (or `port`), counted byte for byte as the
 * client saw it. `params` starts with the country (`-country-de-session-a`).
 */
async function forward(
  cluster: Cluster,
  key: { id: string; secret: string },
  moved: Moved,
  params = '-country-us',
  port = cluster.loadBalancer.ports.proxy,
): Promise<string> {
  const authority = `127.0.0.1:${cluster.target.port}`;
  const auth = Buffer.from(`${key.id}${params}:${key.secret}`).toString('base64');
  const request =
    `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\n` +
    `Proxy-Authorization: Basic ${auth}\r\nConnection: close\r\n\r\n`;
  const reply = (await exchange(port, request)).toString('latin1');
  const exit = /from (\S+)\n$/.exec(reply)?.[1] ?? '';
  moved.up += Buffer.byteLength(request);
  moved.down += Buffer.byteLength(reply, 'latin1');
  moved.requests += 1;
  const country = /^-country-(\w+)/.exec(params)?.[1] ?? '';
  if (!reply.startsWith('HTTP/1.1 200 ') || !(EXITS[country as 'de' | 'us'] ?? []).includes(exit)) {
    moved.failures.push(
      `${new Date().toISOString()} ${params} ${reply.split('\r\n')[0] || '(nothing)'}`,
    );
  } else moved.exits.add(exit);
  return exit;
}

const nothingMoved = (): Moved => ({ up: 0, down: 0, requests: 0, failures: [], exits: new Set() });

const sum = (...all: Moved[]): Moved => ({
  up: all.reduce((total, moved) => total + moved.up, 0),
  down: all.reduce((total, moved) => total + moved.down, 0),
  requests: all.reduce((total, moved) => total + moved.requests, 0),
  failures: all.flatMap((moved) => moved.failures),
  exits: new Set(all.flatMap((moved) => [...moved.exits])),
});

describe('customers are served while an instance is killed or both are rolled', {
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
      env: { USAGE_FLUSH_INTERVAL_MS: '300' },
    });
  });

  after(async () => {
    await cluster?.stop();
    await dropDatabase?.();
    if (redisUrl) await deleteIpcolaKeys(redisUrl);
  });

  /** A key of its own per test: its usage is only what that test moved. */
  const newKey = async () => {
    const made = await cluster.api('/v1/keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'failover', scopes: ['proxy'] }),
    });
    assert.equal(made.status, 201);
    return (await made.json()) as { id: string; secret: string };
  };

  const usageOf = async (keyId: string) => {
    const answer = await cluster.api(`/v1/usage?key_id=${keyId}`);
    assert.equal(answer.status, 200);
    return (
      (await answer.json()) as {
        totals: { bytes_up: number; bytes_down: number; requests: number };
      }
    ).totals;
  };

  const meteredEqualsMoved = async (keyId: string, moved: Moved) => {
    let totals = { bytes_up: 0, bytes_down: 0, requests: 0 };
    await eventually(
      async () => {
        totals = await usageOf(keyId);
        return totals.requests >= moved.requests;
      },
      20_000,
      `the usage of ${moved.requests} requests to be flushed`,
    );
    assert.deepEqual(totals, {
      bytes_up: moved.up,
      bytes_down: moved.down,
      requests: moved.requests,
    });
  };

  test('a killed instance: the balancer sends its customers to the other, its agents move there within seconds, a sticky session keeps its exit', async () => {
    const key = await newKey();
    const holder = cluster.holderOf('agent-de');
    assert.ok(holder, 'the de agent is on a hub');
    const other = cluster.instances.find((instance) => instance !== holder);
    assert.ok(other);
    // Pinned before the kill, through the instance about to die.
    const session = `-country-de-session-kept${Date.now()}`;
    const beforeKill = nothingMoved();
    const pinned = await forward(cluster, key, beforeKill, session, holder.ports.proxy);
    for (let request = 0; request < 6; request += 1) await forward(cluster, key, beforeKill);
    assert.deepEqual(beforeKill.failures, []);
    // The kill waits for their usage to reach the database: an instance pushes what it
    // metered to Redis once a second, and a SIGKILL inside that second loses it (tried:
    // the 3 of 6 requests an instance carried just before its kill, 609 bytes each way,
    // were never metered).
    await meteredEqualsMoved(key.id, beforeKill);
    const killedAt = Date.now();
    assert.equal(await holder.kill('SIGKILL'), 'SIGKILL');

    // At once, before the health checks have noticed: a refused connection is retried on
    // the other instance (retries, option redispatch), and an exit whose instance vanished
    // is swapped for another once (a `us` one is), so nobody sees the kill.
    // Straight to the instance left first, as fast as a balancer would send them: it still
    // offers the dead instance's `us` exit for a moment, and takes the other one instead.
    const atOnce = nothingMoved();
    for (let request = 0; request < 6; request += 1) {
      await forward(cluster, key, atOnce, '-country-us', other.ports.proxy);
    }
    for (let request = 0; request < 6; request += 1) await forward(cluster, key, atOnce);
    assert.deepEqual(atOnce.failures, []);

    // Its agents name both hubs: they are on the other instance within seconds.
    await eventually(
      () => cluster.holderOf('agent-de') === other,
      15_000,
      `the de agent to move to ${other.name}`,
    );
    const movedMs = Date.now() - killedAt;
    await cluster.agentsUp();
    const deAgain = nothingMoved();
    for (let request = 0; request < 6; request += 1) {
      await forward(cluster, key, deAgain, '-country-de');
    }
    assert.deepEqual(deAgain.failures, [], '-country-de works again through the balancer');
    const sticky = nothingMoved();
    for (let request = 0; request < 3; request += 1) {
      assert.equal(
        await forward(cluster, key, sticky, session),
        pinned,
        'the session kept its exit',
      );
    }
    assert.deepEqual(sticky.failures, []);

    await cluster.loadBalancer.waitFor(
      (states) => states.proxy[holder.name]?.startsWith('DOWN') === true,
      10_000,
      `the balancer to take ${holder.name} out`,
    );
    const noticedMs = Date.now() - killedAt;
    const api = await cluster.api('/v1/keys');
    assert.equal(api.status, 200, 'the API answers from the instance left');

    await holder.start();
    await cluster.loadBalancer.waitFor(allUp, 20_000, `${holder.name} to be back in the balancer`);
    const back = nothingMoved();
    for (let request = 0; request < 6; request += 1) await forward(cluster, key, back);
    for (let request = 0; request < 3; request += 1) await forward(cluster, key, back, session);
    assert.deepEqual(back.failures, []);
    process.stdout.write(
      `# after the kill: the de agent was on ${other.name} after ${movedMs} ms, the balancer took ${holder.name} out after ${noticedMs} ms\n`,
    );

    await meteredEqualsMoved(key.id, sum(beforeKill, atOnce, deAgain, sticky, back));
  });

  // The runbook: SIGTERM one instance, start it again, then the next; nothing in HAProxy.
  // The stopping instance stops accepting (HAProxy retries a refused connection on the
  // other), announces its nodes as moving and sends its agents GOAWAY (they attach to
  // the other hub at once), and lets open connections finish.
  test('rolling both instances under load with SIGTERM alone: every request answered, every byte metered', async () => {
    // Whatever the test before left (a failure before its restart): both running.
    for (const instance of cluster.instances) if (!instance.running) await instance.start();
    await cluster.loadBalancer.waitFor(allUp, 20_000, 'both instances in the balancer');
    await cluster.agentsUp();
    const key = await newKey();
    const moved = nothingMoved();
    let rolling = true;
    // Sequential requests, de and us in turn, for as long as the roll lasts (bounded).
    const load = (async () => {
      while (rolling && moved.requests < 5_000) {
        await forward(
          cluster,
          key,
          moved,
          moved.requests % 2 === 0 ? '-country-de' : '-country-us',
        );
      }
    })();
    const { loadBalancer } = cluster;
    const rolled: string[] = [];
    try {
      for (const instance of cluster.instances) {
        const before = moved.requests;
        await eventually(() => moved.requests >= before + 5, 20_000, 'load before the stop');
        const stopping = Date.now();
        assert.equal(await instance.stop(), 0, `${instance.name} exits 0 on SIGTERM`);
        const stoppedMs = Date.now() - stopping;
        await instance.start();
        await loadBalancer.waitFor(allUp, 20_000, `${instance.name} back in the balancer`);
        await cluster.agentsUp();
        rolled.push(
          `${instance.name} stopped in ${stoppedMs} ms, back after ${Date.now() - stopping} ms`,
        );
      }
      const before = moved.requests;
      await eventually(() => moved.requests >= before + 5, 20_000, 'load after the roll');
    } finally {
      rolling = false;
      await load;
    }
    process.stdout.write(
      `# ${moved.requests} requests during the roll (${rolled.join('; ')}), ${moved.up} bytes up and ${moved.down} down, ${moved.failures.length} failed: ${moved.failures.join(' | ')}\n`,
    );
    assert.deepEqual(moved.failures, []);
    assert.deepEqual([...moved.exits].sort(), [...EXITS.de, ...EXITS.us].sort());
    await meteredEqualsMoved(key.id, moved);
  });
});
