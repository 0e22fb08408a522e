import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Targeting } from '../../src/gateway/credentials.ts';
import { type Exit, ExitIndex } from '../../src/gateway/exit-index.ts';

/** mulberry32: a small seeded PRNG, so that the shares below are the same on every run. */
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

function exit(nodeId: string, ip: string, extra: Partial<Exit> = {}): Exit {
  return { id: `${nodeId}/${ip}`, nodeId, ip, type: 'residential', ...extra };
}

describe('exit selection', () => {
  test('targeting by country, region, city, asn and type only ever returns matching exits', () => {
    const index = new ExitIndex();
    index.add(exit('n1', '127.0.0.12', { country: 'de', city: 'berlin', asn: 3320 }));
    index.add(exit('n2', '127.0.0.13', { country: 'us', region: 'california', city: 'san_jose' }));
    index.add(exit('n3', '127.0.0.14', { country: 'us', region: 'new_york', type: 'datacenter' }));
    for (let i = 0; i < 200; i++) {
      assert.equal(index.select({ country: 'de' })?.ip, '127.0.0.12');
      assert.equal(index.select({ country: 'us', region: 'california' })?.ip, '127.0.0.13');
      assert.equal(index.select({ city: 'san_jose' })?.ip, '127.0.0.13');
      assert.equal(index.select({ asn: 3320 })?.ip, '127.0.0.12');
      assert.equal(index.select({ type: 'datacenter' })?.ip, '127.0.0.14');
      assert.ok(['127.0.0.13', '127.0.0.14'].includes(index.select({ country: 'us' })?.ip ?? ''));
    }
  });

  test('no matching exit gives null', () => {
    const index = new ExitIndex();
    assert.equal(index.select({}), null, 'empty index');
    index.add(exit('n1', '127.0.0.12', { country: 'de' }));
    assert.equal(index.select({ country: 'fr' }), null);
    assert.equal(index.select({ country: 'de', type: 'mobile' }), null);
    assert.equal(index.select({ country: 'de', city: 'berlin' }), null);
  });

  test('selection without targeting spreads open streams evenly over all exits', () => {
    const index = new ExitIndex();
    const ips = Array.from({ length: 10 }, (_, i) => `10.1.0.${i}`);
    for (const ip of ips) index.add(exit('n1', ip));
    const load = new Map<string, number>();
    // Seeded, so the figure below is the same on every run; a random pick alone would
    // leave a gap of about 30 between the busiest and the idlest exit.
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 1000; i++) {
      const picked = index.select({}, random);
      assert.ok(picked);
      index.acquire(picked.id); // held open: the load selection must balance
      load.set(picked.ip, (load.get(picked.ip) ?? 0) + 1);
    }
    assert.equal(load.size, 10, 'every exit was used');
    const counts = [...load.values()];
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 5, `uneven: ${counts.join(',')}`);
  });

  test('a released stream stops counting, and releasing twice changes nothing', () => {
    const index = new ExitIndex();
    index.add(exit('n1', '10.0.0.1'));
    index.add(exit('n1', '10.0.0.2'));
    const busy = index.acquire('n1/10.0.0.1');
    index.acquire('n1/10.0.0.1');
    const random = seeded(7);
    const picks = (ip: string) =>
      Array.from({ length: 400 }, () => index.select({}, random)?.ip).filter((p) => p === ip)
        .length;
    // The less loaded nearly always; the other now and then (EXPLORE), never starved.
    const idle = picks('10.0.0.2');
    assert.ok(idle > 360 && idle < 400, `${idle} of 400`);
    busy();
    busy();
    index.acquire('n1/10.0.0.2');
    index.acquire('n1/10.0.0.2');
    // 10.0.0.1 now has 1 open, 10.0.0.2 has 2
    const lighter = picks('10.0.0.1');
    assert.ok(lighter > 360 && lighter < 400, `${lighter} of 400`);
  });

  test('removed exits are never selected and the buckets stay consistent', () => {
    const index = new ExitIndex();
    const countries = ['de', 'us', 'fr'];
    for (let i = 0; i < 300; i++) {
      index.add(
        exit(`n${i % 7}`, `10.2.${Math.floor(i / 250)}.${i % 250}`, { country: countries[i % 3] }),
      );
    }
    const removed = new Set<string>();
    for (let i = 0; i < 300; i += 2) {
      const id = `n${i % 7}/10.2.${Math.floor(i / 250)}.${i % 250}`;
      assert.ok(index.remove(id));
      removed.add(id);
    }
    assert.equal(index.size, 150);
    for (let i = 0; i < 2000; i++) {
      const country = countries[i % 3] as string;
      const picked = index.select({ country });
      assert.ok(picked, country);
      assert.ok(!removed.has(picked.id));
      assert.equal(picked.country, country);
    }
    const total = index.regions().reduce((sum, region) => sum + region.exits, 0);
    assert.equal(total, 150);
  });

  test('every combination of filters finds a match exactly when one exists, after removals', () => {
    const index = new ExitIndex();
    const types = ['residential', 'datacenter', 'mobile'] as const;
    const all: Exit[] = [];
    for (let i = 0; i < 600; i++) {
      const one = exit(`n${i % 11}`, `10.4.${Math.floor(i / 250)}.${i % 250}`, {
        country: ['de', 'us'][i % 2],
        region: ['north', 'south'][Math.floor(i / 2) % 2],
        city: ['a', 'b', 'c'][i % 3],
        asn: 64_500 + (i % 5),
        type: types[i % 7 === 0 ? 2 : i % 3 === 0 ? 1 : 0],
      });
      all.push(one);
      index.add(one);
    }
    // Remove a third, in an order unrelated to insertion, so swaps move entries in every bucket.
    const alive = new Set(all.map((one) => one.id));
    for (let i = 0; i < 600; i += 3) {
      const id = all[(i * 7) % 600]?.id as string;
      if (alive.delete(id)) assert.ok(index.remove(id));
    }
    const fits = (one: Exit, t: Targeting) =>
      (t.country === undefined || one.country === t.country) &&
      (t.region === undefined || one.region === t.region) &&
      (t.city === undefined || one.city === t.city) &&
      (t.asn === undefined || one.asn === t.asn) &&
      (t.type === undefined || one.type === t.type);
    for (const country of [undefined, 'de', 'us', 'fr'])
      for (const region of [undefined, 'north'])
        for (const city of [undefined, 'b'])
          for (const asn of [undefined, 64_502, 1])
            for (const type of [undefined, ...types]) {
              const t: Targeting = { country, region, city, asn, type };
              const exists = all.some((one) => alive.has(one.id) && fits(one, t));
              for (let i = 0; i < 5; i++) {
                const picked = index.select(t);
                assert.equal(picked !== null, exists, JSON.stringify(t));
                if (picked) assert.ok(alive.has(picked.id) && fits(picked, t), JSON.stringify(t));
              }
            }
  });

  test('a rare match inside a big bucket is still found', () => {
    const index = new ExitIndex();
    for (let i = 0; i < 5000; i++)
      index.add(exit('big', `10.3.${Math.floor(i / 250)}.${i % 250}`, { country: 'us' }));
    index.add(exit('rare', '10.9.9.9', { country: 'us', asn: 64512 }));
    assert.equal(index.select({ country: 'us', asn: 64512 })?.ip, '10.9.9.9');
  });

  test('regions count exits by country, city and type without node identities', () => {
    const index = new ExitIndex();
    index.add(exit('n1', '127.0.0.12', { country: 'de' }));
    index.add(exit('n2', '127.0.0.13', { country: 'us' }));
    index.add(exit('n3', '127.0.0.14', { country: 'us' }));
    index.add(exit('n4', '10.0.0.1', { country: 'us', type: 'datacenter', city: 'ashburn' }));
    assert.deepEqual(index.regions(), [
      { country: 'de', city: null, type: 'residential', exits: 1, healthy: 1, asns: [] },
      { country: 'us', city: null, type: 'residential', exits: 2, healthy: 2, asns: [] },
      { country: 'us', city: 'ashburn', type: 'datacenter', exits: 1, healthy: 1, asns: [] },
    ]);
    assert.doesNotMatch(JSON.stringify(index.regions()), /n1|n2|127\.0/);
  });

  test('removing a node removes each of its exit IPs', () => {
    const index = new ExitIndex();
    index.add(exit('dc', '10.0.0.1', { type: 'datacenter' }));
    index.add(exit('dc', '10.0.0.2', { type: 'datacenter' }));
    index.add(exit('home', '10.0.0.3'));
    assert.equal(index.removeNode('dc', ['10.0.0.1', '10.0.0.2']).length, 2);
    assert.equal(index.select({ type: 'datacenter' }), null);
    assert.equal(index.size, 1);
  });
});
