/**
 * The exit index's short memory of stream opens: an exit whose opens fail loses
 * selections to its peers, leaves selection after HUB-like limits of failures in a row,
 * takes one probe when its back-off ends, and comes back when that probe opens; a
 * target's refusal is no fault of the exit. Time and chance are the test's (a clock
 * passed in, a seeded PRNG), so every share below is the same on every run.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Exit, ExitIndex } from '../../src/gateway/exit-index.ts';

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const exit = (ip: string, extra: Partial<Exit> = {}): Exit => ({
  id: `n/${ip}`,
  nodeId: 'n',
  ip,
  type: 'residential',
  country: 'de',
  ...extra,
});

const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
const BAD = 'n/10.0.0.1';

function fourExits(): ExitIndex {
  const index = new ExitIndex({ failureLimit: 3, backoffMs: 5_000, backoffMaxMs: 20_000 });
  for (const ip of IPS) index.add(exit(ip));
  return index;
}

/** How many of `n` selections at time `now` go to the bad exit. */
function share(index: ExitIndex, now: number, n = 4_000, seed = 1): number {
  const random = seeded(seed);
  let count = 0;
  for (let i = 0; i < n; i++) if (index.select({ country: 'de' }, random, now)?.id === BAD) count++;
  return count;
}

describe('exits whose opens fail get less traffic, then none, then come back', () => {
  test('a healthy exit gets its share; one failed open costs it most of it', () => {
    const index = fourExits();
    for (const ip of IPS) index.report(`n/${ip}`, 'opened', 40, 0);
    const healthy = share(index, 1);
    assert.ok(healthy > 800 && healthy < 1_200, `about a quarter: ${healthy} of 4000`);
    index.report(BAD, 'exit_failed', 0, 1);
    const failing = share(index, 2);
    assert.ok(failing < healthy / 3, `less traffic: ${failing} of 4000`);
    assert.ok(failing > 0, 'but some, so that its memory stays fresh');
  });

  test('failures in a row eject it; its back-off ends with one probe; an open brings it back', () => {
    const index = fourExits();
    for (let i = 0; i < 3; i++) index.report(BAD, 'exit_failed', 0, 10);
    assert.ok(index.ejected(BAD, 11));
    assert.equal(share(index, 100), 0, 'none while ejected');
    assert.equal(index.regions(100)[0]?.healthy, 3);

    // Its back-off is over: exactly one selection goes to it, the probe.
    assert.equal(share(index, 5_011), 1);
    assert.equal(share(index, 5_012), 0, 'the next ones wait for the probe');
    index.report(BAD, 'opened', 40, 5_020);
    assert.equal(index.ejected(BAD, 5_021), false);
    assert.ok(share(index, 5_030) > 0, 'back in selection');
    for (let i = 0; i < 20; i++) index.report(BAD, 'opened', 40, 5_040);
    const recovered = share(index, 5_050);
    assert.ok(recovered > 800, `its share again once its opens succeed: ${recovered}`);
  });

  test('a failed probe doubles the back-off, up to its maximum', () => {
    const index = fourExits();
    for (let i = 0; i < 3; i++) index.report(BAD, 'exit_failed', 0, 0);
    // Out for 5 s, then probes failing at 5 s, 15 s and 35 s: out 10 s, 20 s, 20 s (the maximum).
    let probeAt = 5_000;
    for (const backoff of [10_000, 20_000, 20_000]) {
      assert.equal(share(index, probeAt - 1), 0, `out until ${probeAt}`);
      assert.equal(share(index, probeAt), 1, `a probe at ${probeAt}`);
      index.report(BAD, 'exit_failed', 0, probeAt);
      probeAt += backoff;
    }
    assert.equal(share(index, probeAt - 1), 0);
    assert.equal(share(index, probeAt), 1);
  });

  test('an exit whose connects take seconds gets less traffic; under two seconds is no matter', () => {
    const index = fourExits();
    for (const ip of IPS) index.report(`n/${ip}`, 'opened', 40, 0);
    index.report(BAD, 'opened', 1_500, 0);
    const quickEnough = share(index, 1);
    assert.ok(quickEnough > 800, `${quickEnough} of 4000`);
    for (let i = 0; i < 20; i++) index.report(BAD, 'opened', 6_000, 0);
    const crawling = share(index, 1);
    assert.ok(crawling < quickEnough / 3 && crawling > 0, `${crawling} of 4000`);
  });

  test("a target's refusal is no fault of the exit", () => {
    const index = fourExits();
    for (let i = 0; i < 10; i++) index.report(BAD, 'target_failed', 0, 0);
    assert.equal(index.ejected(BAD, 1), false);
    const count = share(index, 1);
    assert.ok(count > 800, `${count} of 4000`);
  });

  test('when every match is ejected, one is still used rather than none', () => {
    const index = new ExitIndex({ failureLimit: 1 });
    index.add(exit('10.0.0.1'));
    index.report(BAD, 'exit_failed', 0, 0);
    assert.equal(index.select({ country: 'de' }, Math.random, 1)?.id, BAD);
  });

  test('an exit with room for more streams takes more of them', () => {
    const index = new ExitIndex();
    index.add(exit('10.0.0.1', { capacity: 100 }));
    index.add(exit('10.0.0.2', { capacity: 10 }));
    const random = seeded(3);
    const open = new Map<string, number>();
    for (let i = 0; i < 220; i++) {
      const chosen = index.select({}, random, 0);
      assert.ok(chosen);
      index.acquire(chosen.id);
      open.set(chosen.ip, (open.get(chosen.ip) ?? 0) + 1);
    }
    const big = open.get('10.0.0.1') ?? 0;
    const small = open.get('10.0.0.2') ?? 0;
    assert.ok(big > 4 * small, `${big} against ${small}`);
    assert.ok(small > 0);
  });
});
