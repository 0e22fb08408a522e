import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { HotState } from '../../src/store/index.ts';
import { eventually, hotStateEngines, type Opened } from '../support/engines.ts';

for (const engine of hotStateEngines) {
  describe(`hot state on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<HotState>;
    let hot: HotState;
    before(async () => {
      opened = await engine.open();
      hot = opened.value;
    });
    after(() => opened.dispose());

    test('a session claim pins the first value and later claims get it back', async () => {
      assert.equal(await hot.sessions.claim('k1:job42', '127.0.0.13', 60_000), '127.0.0.13');
      assert.equal(await hot.sessions.claim('k1:job42', '127.0.0.14', 60_000), '127.0.0.13');
      assert.equal(await hot.sessions.peek('k1:job42'), '127.0.0.13');
      assert.equal(await hot.sessions.peek('k1:other'), null);
    });

    test('concurrent claims of one new session all agree on one value', async () => {
      const values = await Promise.all(
        Array.from({ length: 50 }, (_, i) => hot.sessions.claim('k1:race', `10.0.0.${i}`, 60_000)),
      );
      assert.equal(new Set(values).size, 1);
    });

    test('a session expires after its TTL without use', async () => {
      await hot.sessions.claim('k1:short', 'a', 150);
      assert.equal(await hot.sessions.peek('k1:short'), 'a');
      await eventually(async () => (await hot.sessions.peek('k1:short')) === null, 3_000, 'expiry');
      assert.equal(await hot.sessions.touch('k1:short', 150), null, 'touch does not revive it');
      assert.equal(
        await hot.sessions.claim('k1:short', 'b', 60_000),
        'b',
        'a new claim may pin anew',
      );
    });

    test('use renews the TTL', async () => {
      await hot.sessions.claim('k1:renewed', 'a', 300);
      const started = Date.now();
      // Keep using it for well over its TTL; each touch pushes expiry 300 ms out.
      while (Date.now() - started < 900) {
        assert.equal(await hot.sessions.touch('k1:renewed', 300), 'a');
        await new Promise((resolve) => setTimeout(resolve, 60));
      }
      assert.equal(await hot.sessions.peek('k1:renewed'), 'a');
    });

    test('inspect shows the pinned value and the time it has left, without renewing it', async () => {
      assert.equal(await hot.sessions.inspect('k1:inspected'), null);
      await hot.sessions.claim('k1:inspected', 'exit-a', 60_000);
      const seen = await hot.sessions.inspect('k1:inspected');
      assert.equal(seen?.value, 'exit-a');
      assert.ok(seen && seen.ttlMs > 50_000 && seen.ttlMs <= 60_000, `ttl ${seen?.ttlMs}`);
      await hot.sessions.touch('k1:inspected', 120_000);
      const renewed = await hot.sessions.inspect('k1:inspected');
      assert.ok(renewed && renewed.ttlMs > 110_000, `renewed ttl ${renewed?.ttlMs}`);
      await hot.sessions.release('k1:inspected');
      assert.equal(await hot.sessions.inspect('k1:inspected'), null);
    });

    test('release forgets a session at once', async () => {
      await hot.sessions.claim('k1:gone', 'a', 60_000);
      await hot.sessions.release('k1:gone');
      assert.equal(await hot.sessions.peek('k1:gone'), null);
    });

    test('concurrent increments are all counted', async () => {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          hot.counters.add('usage-concurrent', {
            'k1|n1|up': 3,
            'k1|n1|down': i,
            'k1|n1|requests': 1,
          }),
        ),
      );
      assert.deepEqual(await hot.counters.read('usage-concurrent'), {
        'k1|n1|up': 600,
        'k1|n1|down': (199 * 200) / 2,
        'k1|n1|requests': 200,
      });
    });

    test('sealing moves the counts into a batch that stays pending until acknowledged', async () => {
      const group = 'usage-seal';
      assert.equal(await hot.counters.seal(group), null, 'nothing to seal');
      await hot.counters.add(group, { a: 5, b: 7 });
      const batch = await hot.counters.seal(group);
      assert.ok(batch);
      assert.deepEqual(batch.counts, { a: 5, b: 7 });
      assert.deepEqual(await hot.counters.read(group), {}, 'the current counts start from zero');

      await hot.counters.add(group, { a: 1 });
      const second = await hot.counters.seal(group);
      assert.ok(second);
      assert.notEqual(second.id, batch.id);
      assert.deepEqual(
        (await hot.counters.pending(group)).map((b) => [b.id, b.counts]),
        [
          [batch.id, { a: 5, b: 7 }],
          [second.id, { a: 1 }],
        ],
        'oldest first',
      );

      await hot.counters.ack(group, batch.id);
      await hot.counters.ack(group, batch.id); // acknowledging twice is harmless
      assert.deepEqual(
        (await hot.counters.pending(group)).map((b) => b.id),
        [second.id],
      );
    });

    test('increments racing a seal are each counted exactly once', async () => {
      const group = 'usage-race';
      const sealed: Array<Record<string, number>> = [];
      const writers = Array.from({ length: 300 }, () => hot.counters.add(group, { bytes: 1 }));
      const sealers = Array.from({ length: 10 }, async () => {
        const batch = await hot.counters.seal(group);
        if (batch) sealed.push(batch.counts);
      });
      await Promise.all([...writers, ...sealers]);
      const last = await hot.counters.seal(group);
      if (last) sealed.push(last.counts);
      const total = sealed.reduce((sum, counts) => sum + (counts.bytes ?? 0), 0);
      assert.equal(total, 300);
    });

    test('registry entries are listed while live and vanish after their TTL', async () => {
      await hot.registry.put('node', 'n1', JSON.stringify({ country: 'de' }), 60_000);
      await hot.registry.put('node', 'n2', JSON.stringify({ country: 'us' }), 150);
      await hot.registry.put('other', 'x', 'y', 60_000);
      const ids = async () => (await hot.registry.list('node')).map((e) => e.id).sort();
      assert.deepEqual(await ids(), ['n1', 'n2']);
      assert.deepEqual(JSON.parse((await hot.registry.get('node', 'n1')) ?? 'null'), {
        country: 'de',
      });
      await eventually(async () => (await ids()).length === 1, 3_000, 'n2 to expire');
      assert.deepEqual(await ids(), ['n1']);
      assert.equal(await hot.registry.get('node', 'n2'), null);
      await hot.registry.remove('node', 'n1');
      assert.deepEqual(await ids(), []);
      assert.deepEqual(
        (await hot.registry.list('other')).map((e) => e.value),
        ['y'],
      );
    });

    test('a registry put refreshes the TTL and replaces the value', async () => {
      await hot.registry.put('node', 'n3', 'v1', 150);
      await hot.registry.put('node', 'n3', 'v2', 60_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(await hot.registry.get('node', 'n3'), 'v2');
    });

    test('a rate limiter allows its points and refuses the next', async () => {
      const limiter = hot.rateLimiter({ name: `auth-${engine.name}`, points: 3, durationSec: 60 });
      for (let i = 0; i < 3; i++) await limiter.consume('203.0.113.7');
      await assert.rejects(
        limiter.consume('203.0.113.7'),
        (rejection: { remainingPoints?: number }) => {
          assert.equal(rejection.remainingPoints, 0);
          return true;
        },
      );
      await limiter.consume('203.0.113.8'); // another client is not affected
    });

    test('ping answers while the engine is open', async () => {
      await hot.ping();
    });
  });
}
