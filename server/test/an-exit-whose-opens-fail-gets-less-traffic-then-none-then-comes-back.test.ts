/**
 * One node, two exit IPs, one of which starts failing every stream open: through the
 * real gateway it gets less traffic, then none (ejected, while its node and its other
 * exit carry on), and once it works again a probe brings it back. The node's own
 * failed-open limit is set out of reach, so what is seen is the gateway's per-exit memory.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEgress } from '@ipcola/agent/egress';
import { connectToHub, type OpenEgress, type TunnelClient } from '@ipcola/agent/tunnel';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import { eventually } from './support/engines.ts';
import { nextLog, throughProxy } from './support/node-health.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const FAILING = '127.0.0.12';
const STEADY = '127.0.0.13';

describe('an exit whose opens fail gets less traffic, then none, then comes back', () => {
  let net: ProxyNetwork;
  let agent: TunnelClient;
  let broken = false;

  before(async () => {
    net = await startProxyNetwork([], { HUB_STREAM_FAILURE_LIMIT: '1000' });
    const node = (await (await net.api('/v1/nodes', { method: 'POST', body: '{}' })).json()) as {
      token: string;
    };
    // The real agent's tunnel and egress, with a switch in front of one exit IP's egress:
    // an error without a tunnel code is what a broken exit answers (exit_failed).
    const egress = createEgress({ policy: createExitPolicy({ allowTargets: ['127.0.0.1/32'] }) });
    const openEgress: OpenEgress = (target, signal) =>
      broken && target.exitIp === FAILING
        ? Promise.reject(new Error('this exit IP is broken'))
        : egress(target, signal);
    const up = nextLog(net.server, (line) => line.msg === 'node up', 15_000, 'node up');
    agent = connectToHub({
      hub: `127.0.0.1:${net.ports.hub}`,
      token: node.token,
      hello: {
        exitIps: [FAILING, STEADY],
        country: 'de',
        type: 'residential',
        maxStreams: 64,
        agentVersion: '0.1.0-test',
      },
      openEgress,
      idleTimeoutMs: 30_000,
    });
    await up;
  });

  after(async () => {
    await agent?.close();
    await net?.close();
  });

  const de = () => throughProxy(net, '-country-de');

  test('both exits share the traffic while both work', async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const answer = await de();
      assert.equal(answer.status, 200);
      seen.set(answer.body, (seen.get(answer.body) ?? 0) + 1);
    }
    assert.ok((seen.get(FAILING) ?? 0) >= 10, JSON.stringify([...seen]));
    assert.ok((seen.get(STEADY) ?? 0) >= 10, JSON.stringify([...seen]));
  });

  test('failing, it gets less traffic, then none; the other exit carries on', async () => {
    broken = true;
    let failures = 0;
    let requests = 0;
    // Until three failed opens in a row have taken it out.
    while (failures < 3) {
      const answer = await de();
      requests++;
      if (answer.status === 502) {
        assert.equal(answer.code, 'exit_failed');
        failures++;
      } else assert.deepEqual([answer.status, answer.body], [200, STEADY]);
      assert.ok(requests < 2_000, 'it is taken out in the end');
    }
    const ejectedAt = performance.now();
    assert.ok(failures / requests < 0.25, `less traffic: ${failures} of ${requests}`);
    // Out for 5 s: every connection in the next 4 s takes the other exit.
    let checked = 0;
    while (performance.now() - ejectedAt < 4_000 && checked < 40) {
      const answer = await de();
      if (performance.now() - ejectedAt >= 4_000) break; // too slow to tell: its probe may be due
      assert.deepEqual([answer.status, answer.body], [200, STEADY], 'none while it is out');
      checked++;
    }
    assert.ok(checked >= 5, `${checked} connections while it was out`);
  });

  test('working again, it is let back by a probe when its back-off ends', async () => {
    broken = false;
    await eventually(async () => (await de()).body === FAILING, 30_000, 'the exit to come back');
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      const answer = await de();
      assert.equal(answer.status, 200);
      seen.add(answer.body);
    }
    assert.deepEqual([...seen].sort(), [FAILING, STEADY]);
  });
});
