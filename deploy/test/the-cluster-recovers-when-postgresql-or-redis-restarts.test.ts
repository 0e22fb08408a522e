/**
 * The cluster on private PostgreSQL and Redis servers, which this test stops and starts
 * under it (the shared ones are other tests'). While either is down every instance's
 * /readyz is red, so HAProxy takes both out of the API backend; no instance crashes; once
 * it is back, both are taken back and customers are served through the balancer again.
 *
 * What customers see while it is down is not asserted here: whether a proxy request is
 * refused or carried on cached standing is the failover work of issue 17.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, needs } from '../../server/test/support/engines.ts';
import {
  type PrivateService,
  privatePostgres,
  privateRedis,
} from '../../server/test/support/private-services.ts';
import { exchange } from '../../server/test/support/raw-exchange.ts';
import { allUp, type Cluster, startCluster } from '../cluster/index.ts';

const US_EXITS = ['127.0.0.13', '127.0.0.14'];

/** One forwarded request through the balancer: the exit that carried it, or what went wrong. */
async function throughBalancer(cluster: Cluster): Promise<string> {
  const { id, secret } = cluster.customer.key;
  const authority = `127.0.0.1:${cluster.target.port}`;
  const auth = Buffer.from(`${id}-country-us:${secret}`).toString('base64');
  const reply = (
    await exchange(
      cluster.loadBalancer.ports.proxy,
      `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\n` +
        `Proxy-Authorization: Basic ${auth}\r\nConnection: close\r\n\r\n`,
    )
  ).toString('latin1');
  const exit = /^HTTP\/1\.1 200 [\s\S]*from (\S+)\n$/.exec(reply)?.[1];
  return exit ?? (reply.split('\r\n')[0] || '(closed)');
}

describe('the cluster recovers when PostgreSQL or Redis restarts', {
  skip: needs('DATABASE_URL', 'REDIS_URL'),
}, () => {
  let cluster: Cluster;
  let postgres: PrivateService;
  let redis: PrivateService;

  before(async () => {
    postgres = await privatePostgres();
    redis = await privateRedis();
    cluster = await startCluster({ ports: 'free', databaseUrl: postgres.url, redisUrl: redis.url });
  });

  after(async () => {
    await cluster?.stop();
    await redis?.dispose();
    await postgres?.dispose();
  });

  const readiness = (port: number) =>
    fetch(`http://127.0.0.1:${port}/readyz`).then(
      (answer) => answer.arrayBuffer().then(() => answer.status),
      () => 0,
    );

  /** The exits six requests in a row through the balancer left from; each a `us` one. */
  const sixRequests = async () => {
    const exits: string[] = [];
    for (let request = 0; request < 6; request += 1) exits.push(await throughBalancer(cluster));
    assert.ok(
      exits.every((exit) => US_EXITS.includes(exit)),
      exits.join(', '),
    );
    return [...new Set(exits)].sort();
  };
  /** Six requests in a row through the balancer, each from a `us` exit, reaching both. */
  const servedByBoth = async () => assert.deepEqual(await sixRequests(), US_EXITS);

  for (const [name, service] of [
    ['PostgreSQL', () => postgres],
    ['Redis', () => redis],
  ] as const) {
    test(`${name} down: both instances leave the API backend, none crashes, both come back`, async () => {
      await servedByBoth();
      await service().stop();
      const stoppedAt = Date.now();
      for (const instance of cluster.instances) {
        await eventually(
          async () => (await readiness(instance.ports.api)) === 503,
          15_000,
          `${instance.name}'s /readyz to go red`,
        );
      }
      await cluster.loadBalancer.waitFor(
        (states) => Object.values(states.api).every((state) => state.startsWith('DOWN')),
        15_000,
        'both instances to leave the API backend',
      );
      const outMs = Date.now() - stoppedAt;

      await service().start();
      const startedAt = Date.now();
      await cluster.loadBalancer.waitFor(allUp, 30_000, 'both instances back in the balancer');
      const backMs = Date.now() - startedAt;
      for (const instance of cluster.instances) {
        assert.ok(instance.running, `${instance.name} is still running`);
        assert.equal(await readiness(instance.ports.api), 200);
      }
      const keys = await cluster.api('/v1/keys');
      assert.equal(keys.status, 200, 'the API answers through the balancer again');
      // The agents' tunnels do not depend on either service: they stayed up.
      await cluster.agentsUp(1_000);
      // Every request succeeds at once; the spread over both exits comes back within
      // moments: Redis restarts empty, and each instance registers its nodes again as it
      // reconnects (once, in CI, the first six requests after it all left from one exit).
      await eventually(
        async () => (await sixRequests()).length === US_EXITS.length,
        10_000,
        'requests to reach both us exits again',
      );
      process.stdout.write(
        `# ${name}: both instances out of the API backend ${outMs} ms after it stopped, back ${backMs} ms after it started\n`,
      );
    });
  }
});
