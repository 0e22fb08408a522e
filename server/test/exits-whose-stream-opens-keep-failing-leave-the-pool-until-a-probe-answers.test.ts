import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEgress } from '@ipcola/agent/egress';
import { connectToHub, type OpenEgress, type TunnelClient } from '@ipcola/agent/tunnel';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import { StreamHealth } from '../src/hub/stream-health.ts';
import { type LogLine, nextLog, throughProxy } from './support/node-health.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const FAILURE_LIMIT = 3;
const BACKOFF_MS = 200;
const BACKOFF_MAX_MS = 1_000;
/** Bound on any one awaited log line: back-offs here are at most a second. */
const WAIT_MS = 15_000;
const EXIT_IP = '127.0.0.12';

describe('the back-off between probes', () => {
  test('doubles with each ejection and failed probe, up to the cap; an answered stream resets it', () => {
    const health = new StreamHealth({ failureLimit: 3, backoffMs: 100, backoffMaxMs: 500 });
    assert.deepEqual(
      [health.record('failed'), health.record('failed'), health.record('failed')],
      [false, false, true],
    );
    assert.equal(health.backoffMs(), 100);
    health.probed('failed');
    assert.equal(health.backoffMs(), 200);
    health.probed('failed');
    health.probed('failed');
    assert.equal(health.backoffMs(), 500, 'capped');
    assert.equal(health.probed('answered'), true);
    // Back by a probe only: the next failure takes it out again, the back-off still long.
    assert.equal(health.record('failed'), true);
    assert.equal(health.backoffMs(), 500);
    health.probed('answered');
    health.record('answered');
    assert.deepEqual(
      [health.record('failed'), health.record('failed'), health.record('failed')],
      [false, false, true],
    );
    assert.equal(health.backoffMs(), 100, 'reset by an answered stream');
  });
});

describe('a node whose stream opens keep failing', () => {
  let net: ProxyNetwork;
  let agent: TunnelClient;
  /** While true, the node answers every stream with exit_failed, probes included. */
  let broken = false;
  const logs: LogLine[] = [];

  before(async () => {
    net = await startProxyNetwork([], {
      HUB_STREAM_FAILURE_LIMIT: String(FAILURE_LIMIT),
      HUB_PROBE_BACKOFF_MS: String(BACKOFF_MS),
      HUB_PROBE_BACKOFF_MAX_MS: String(BACKOFF_MAX_MS),
    });
    net.server.child.on('log', (line: LogLine) => logs.push(line));
    const node = (await (await net.api('/v1/nodes', { method: 'POST', body: '{}' })).json()) as {
      token: string;
    };
    // The real agent's tunnel and egress, with a switch in front of the egress: an error
    // without a tunnel code is what a broken exit answers (exit_failed).
    const egress = createEgress({ policy: createExitPolicy({ allowTargets: ['127.0.0.1/32'] }) });
    const openEgress: OpenEgress = (target, signal) =>
      broken ? Promise.reject(new Error('this exit is broken')) : egress(target, signal);
    const up = nextLog(net.server, (line) => line.msg === 'node up', WAIT_MS, 'node up');
    agent = connectToHub({
      hub: `127.0.0.1:${net.ports.hub}`,
      token: node.token,
      hello: {
        exitIps: [EXIT_IP],
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
  const pinned = () => throughProxy(net, '-country-de-session-health1');
  const nodeDowns = () => logs.filter((line) => line.msg === 'node down').length;
  const OUT = 'node out of the pool: its stream opens keep failing';
  const BACK = 'node back in the pool: it answered a probe';
  const PROBE_FAILED = 'node probe failed';

  /**
   * The first `count` log lines with message `msg` logged at or after index `since` of
   * the server's log, once there are that many (bounded by WAIT_MS). Counting from a
   * mark taken before acting means no line is missed however fast it comes.
   */
  function linesSince(since: number, msg: string, count = 1): Promise<LogLine[]> {
    const found = () => logs.slice(since).filter((line) => line.msg === msg);
    if (found().length >= count) return Promise.resolve(found().slice(0, count));
    return nextLog(net.server, () => found().length >= count, WAIT_MS, `${count} × ${msg}`).then(
      () => found().slice(0, count),
    );
  }

  test("refusals that are the target's fault never count against it", async () => {
    assert.deepEqual((await pinned()).body, EXIT_IP);
    for (let i = 0; i < FAILURE_LIMIT + 2; i++) {
      const closedPort = await throughProxy(net, '-country-de', { host: '127.0.0.1', port: 9 });
      assert.deepEqual([closedPort.status, closedPort.code], [502, 'target_unreachable']);
      const smtp = await throughProxy(net, '-country-de', { host: '127.0.0.1', port: 25 });
      assert.deepEqual([smtp.status, smtp.code], [403, 'target_forbidden']);
    }
    assert.deepEqual([(await de()).status, nodeDowns()], [200, 0]);
  });

  let ejectedAt = 0;
  test(`after ${FAILURE_LIMIT} failed opens in a row it leaves the pool; its sessions get session_exit_gone`, async () => {
    broken = true;
    ejectedAt = logs.length;
    for (let i = 0; i < FAILURE_LIMIT; i++) {
      const failed = await de();
      assert.deepEqual([failed.status, failed.code], [502, 'exit_failed'], `open ${i + 1}`);
    }
    const [out] = await linesSince(ejectedAt, OUT);
    assert.equal(out?.probeInMs, BACKOFF_MS);
    const next = await de();
    assert.deepEqual([next.status, next.code], [503, 'no_exit_available']);
    const sticky = await pinned();
    assert.deepEqual([sticky.status, sticky.code], [503, 'session_exit_gone']);
  });

  test('failed probes keep it out, each waiting twice as long', async () => {
    const failures = await linesSince(ejectedAt, PROBE_FAILED, 2);
    assert.deepEqual(
      failures.map((line) => line.probeInMs),
      [BACKOFF_MS * 2, BACKOFF_MS * 4],
    );
    assert.equal((await de()).code, 'no_exit_available');
  });

  test('an answered probe brings it back, and its live sticky session uses it again', async () => {
    const mark = logs.length;
    broken = false;
    await linesSince(mark, BACK);
    const fresh = await de();
    assert.deepEqual([fresh.status, fresh.body], [200, EXIT_IP]);
    const sticky = await pinned();
    assert.deepEqual([sticky.status, sticky.body], [200, EXIT_IP]);
  });

  test('back by a probe only, one more failure takes it out again, with a capped back-off', async () => {
    // The answered opens of the previous test reset its count and back-off.
    broken = true;
    let mark = logs.length;
    for (let i = 0; i < FAILURE_LIMIT; i++) assert.equal((await de()).code, 'exit_failed');
    assert.equal((await linesSince(mark, OUT))[0]?.probeInMs, BACKOFF_MS);
    // 200 → 400 → 800 → 1000 (capped): three failed probes.
    const failures = await linesSince(mark, PROBE_FAILED, 3);
    assert.deepEqual(
      failures.map((line) => line.probeInMs),
      [BACKOFF_MS * 2, BACKOFF_MS * 4, BACKOFF_MAX_MS],
    );
    mark = logs.length;
    broken = false;
    await linesSince(mark, BACK);
    broken = true;
    mark = logs.length;
    assert.equal((await de()).code, 'exit_failed');
    assert.equal((await linesSince(mark, OUT))[0]?.probeInMs, BACKOFF_MAX_MS);
    assert.equal((await de()).code, 'no_exit_available');
    broken = false;
  });
});
