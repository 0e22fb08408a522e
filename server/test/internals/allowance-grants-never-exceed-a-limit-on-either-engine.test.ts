import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { HotState } from '../../src/store/index.ts';
import { openRedisHotState } from '../../src/store/index.ts';
import {
  eventually,
  hotStateEngines,
  needs,
  type Opened,
  quietLogger,
  required,
} from '../support/engines.ts';

const MIB = 1024 * 1024;
/** Micro-units per byte at 4.00 and 0.50 per GB. */
const RESIDENTIAL = 4_000_000 / 1e9;
const DATACENTER = 500_000 / 1e9;

for (const engine of hotStateEngines) {
  describe(`allowance ledger on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<HotState>;
    let hot: HotState;
    before(async () => {
      opened = await engine.open();
      hot = opened.value;
    });
    after(() => opened.dispose());

    test('200 racing reservations against 1 MiB grant exactly 1 MiB in all', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      const grants = await Promise.all(
        Array.from({ length: 200 }, () =>
          ledger.reserve([{ id: 'k:race', limit: MIB, rate: 1 }], 64 * 1024, 16 * 1024, epoch),
        ),
      );
      const total = grants.reduce<number>((sum, granted) => sum + (granted ?? 0), 0);
      assert.equal(total, MIB);
      assert.ok(grants.every((granted) => granted !== null && granted >= 0));
      assert.deepEqual(await ledger.committed(['k:race']), [MIB]);
      assert.equal(await ledger.reserve([{ id: 'k:race', limit: MIB, rate: 1 }], 1, 1, epoch), 0);
    });

    test('a grant is the smallest room among its buckets and is committed in each', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      const buckets = [
        { id: 'a:two', limit: 10 * MIB, rate: 1 },
        { id: 'k:two', limit: 100_000, rate: 1 },
      ];
      const first = await ledger.reserve(buckets, MIB, 16 * 1024, epoch);
      // Near zero a grant is an eighth of the room, not all of it.
      assert.equal(first, 16 * 1024);
      assert.deepEqual(await ledger.committed(['a:two', 'k:two']), [16 * 1024, 16 * 1024]);
      await ledger.adjust({ 'a:two': -(16 * 1024), 'k:two': -(16 * 1024) });
      assert.deepEqual(await ledger.committed(['a:two', 'k:two']), [0, 0]);
    });

    test('a grant takes bytes from a cap and their price from a balance', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      // 1,000 micro-units at 0.004 per byte (4.00 per GB) buy 250,000 bytes.
      const buckets = [
        { id: 'a:priced', limit: 1000, rate: RESIDENTIAL },
        { id: 'k:priced', limit: 10 * MIB, rate: 1 },
      ];
      const granted = await ledger.reserve(buckets, MIB, 16 * 1024, epoch);
      // Near zero: an eighth of the 250,000 bytes the balance buys.
      assert.equal(granted, 31_250);
      const [money, bytes] = await ledger.committed(['a:priced', 'k:priced']);
      assert.ok(Math.abs((money ?? 0) - 125) < 1e-9, `${money} micro-units committed, not 125`);
      assert.equal(bytes, 31_250);
      await ledger.adjust({ 'a:priced': -(money ?? 0), 'k:priced': -31_250 });
      assert.deepEqual(await ledger.committed(['a:priced', 'k:priced']), [0, 0]);
      // Through an exit eight times cheaper, the same balance buys eight times the bytes.
      const cheap = [{ id: 'a:priced', limit: 1000, rate: DATACENTER }];
      assert.equal(await ledger.reserve(cheap, 4 * MIB, 16 * 1024, epoch), 2_000_000 / 8);
    });

    test('200 racing reservations at two prices never commit more money than the balance', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      const balance = 20_000;
      const reserveAt = (rate: number) =>
        ledger.reserve([{ id: 'a:prices', limit: balance, rate }], 64 * 1024, 16 * 1024, epoch);
      const rates = Array.from({ length: 200 }, (_, i) => (i % 2 ? RESIDENTIAL : DATACENTER));
      const grants = await Promise.all(rates.map(reserveAt));
      const price = grants.reduce<number>(
        (sum, granted, i) => sum + (granted ?? 0) * (rates[i] ?? 0),
        0,
      );
      const [committed = 0] = await ledger.committed(['a:prices']);
      assert.ok(Math.abs(committed - price) < 1e-6, `committed ${committed}, granted ${price}`);
      assert.ok(committed <= balance + 1e-6, `${committed} committed of a ${balance} balance`);
      // Whatever is left buys less than a byte at either price.
      while (((await reserveAt(DATACENTER)) ?? 0) > 0);
      assert.equal(await reserveAt(RESIDENTIAL), 0);
      const [drained = 0] = await ledger.committed(['a:prices']);
      assert.ok(
        drained <= balance + 1e-6 && drained > balance - DATACENTER,
        `${drained} committed`,
      );
    });

    test('a settled flush moves the epoch, and a reservation made before it is refused', async () => {
      const ledger = hot.allowances;
      const before = await ledger.epoch();
      assert.equal(
        await ledger.reserve([{ id: 'a:flush', limit: MIB, rate: 1 }], 1000, 1, before),
        1000,
      );
      await ledger.settle('batch-1', { 'a:flush': 600 });
      assert.deepEqual(await ledger.committed(['a:flush']), [400]);
      assert.equal(
        await ledger.reserve([{ id: 'a:flush', limit: MIB, rate: 1 }], 1000, 1, before),
        null,
      );
      const now = await ledger.epoch();
      assert.notEqual(now, before);
      assert.equal(
        await ledger.reserve([{ id: 'a:flush', limit: MIB, rate: 1 }], 1000, 1, now),
        1000,
      );
    });

    test('settling one batch twice takes its bytes out once, and adds them to settled once', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      await ledger.reserve([{ id: 'a:twice', limit: MIB, rate: 1 }], 5000, 1, epoch);
      await ledger.beginSettle('batch-twice');
      assert.deepEqual(await ledger.settled(['a:twice']), [0], 'beginning a flush settles nothing');
      await ledger.settle('batch-twice', { 'a:twice': 3000 });
      await ledger.settle('batch-twice', { 'a:twice': 3000 });
      assert.deepEqual(await ledger.committed(['a:twice']), [2000]);
      await ledger.settle('batch-again', { 'a:twice': 500 });
      assert.deepEqual(await ledger.settled(['a:twice', 'a:never']), [3500, 0]);
    });

    test('between a flush beginning and its settle, the epoch is not quiet', async () => {
      const ledger = hot.allowances;
      const quiet = await ledger.quietEpoch();
      assert.ok(quiet !== null, 'quiet while no flush runs');
      await ledger.beginSettle('batch-window');
      assert.equal(await ledger.quietEpoch(), null);
      assert.notEqual(await ledger.epoch(), quiet, 'beginning a flush moves the epoch');
      await ledger.settle('batch-window', {});
      const after = await ledger.quietEpoch();
      assert.ok(after !== null && after !== quiet, 'quiet again, at a new epoch');
    });

    test('a bucket lowered below what it committed grants nothing', async () => {
      const ledger = hot.allowances;
      const epoch = await ledger.epoch();
      assert.equal(
        await ledger.reserve([{ id: 'a:lowered', limit: 10 * MIB, rate: 1 }], MIB, 1, epoch),
        MIB,
      );
      assert.equal(
        await ledger.reserve([{ id: 'a:lowered', limit: MIB / 2, rate: 1 }], 1, 1, epoch),
        0,
      );
    });
  });
}

// Holds matter only when instances share Redis.
describe('allowance holds of a stopped instance', { skip: needs('REDIS_URL') }, () => {
  test('are released by another instance, keeping what it metered and pushed', async () => {
    const url = required('REDIS_URL');
    const prefix = `ipcola-test:holds-${Date.now()}:`;
    const crashed = await openRedisHotState(url, quietLogger, { prefix, holderTtlMs: 300 });
    const survivor = await openRedisHotState(url, quietLogger, { prefix, holderTtlMs: 300 });
    try {
      await crashed.allowances.reconcile();
      const epoch = await crashed.allowances.epoch();
      const buckets = [
        { id: 'a:acct', limit: 10 * MIB, rate: RESIDENTIAL },
        { id: 'k:key', limit: 10 * MIB, rate: 1 },
      ];
      assert.equal(await crashed.allowances.reserve(buckets, MIB, 1, epoch), MIB);
      // It metered 200,000 bytes (800 micro-units) and pushed them, then died holding the
      // rest of its grant.
      await crashed.counters.add(
        'usage',
        { 'key|node|de|1|down': 200_000 },
        { 'a:acct': 200_000 * RESIDENTIAL, 'k:key': 200_000 },
      );
      assertNear(await survivor.allowances.committed(['a:acct', 'k:key']), [
        MIB * RESIDENTIAL,
        MIB,
      ]);
      await crashed.close();

      await eventually(
        async () => (await survivor.allowances.reconcile()) === 1,
        5_000,
        'the stopped holder is released',
      );
      assertNear(await survivor.allowances.committed(['a:acct', 'k:key']), [800, 200_000]);
      // Once flushed, those bytes leave the buckets too: nothing stays committed.
      await survivor.allowances.settle('b1', { 'a:acct': 200_000 * RESIDENTIAL, 'k:key': 200_000 });
      assert.deepEqual(await survivor.allowances.committed(['a:acct', 'k:key']), [0, 0]);
      assert.equal(await survivor.allowances.reconcile(), 0, 'a live holder keeps its holds');
    } finally {
      await survivor.close();
      const { Redis } = await import('ioredis');
      const redis = new Redis(url);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });
});

/** Money is committed in fractions of a micro-unit: equal up to rounding. */
function assertNear(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((value, i) => {
    assert.ok(Math.abs(value - (expected[i] as number)) < 1e-6, `${actual} is not ${expected}`);
  });
}
