/**
 * Failed sign-ins are counted in Redis by every instance together; a block is then told
 * to every instance at once (pub/sub), so that an instance that never saw the address
 * fail does not judge one more secret from it. Two hot states on one Redis prefix stand
 * for two instances.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type AuthFailureLimit, authFailureLimits } from '../../src/auth-failures/index.ts';
import type { HotState } from '../../src/store/index.ts';
import { eventually, needs, type Opened, openSharedRedisHotStates } from '../support/engines.ts';

const LIMIT = 3;
const TOPIC = 'blocked:proxy-auth-failures';

/** Resolves once `to` hears what `from` publishes on the topic (junk to the limits). */
async function listening(to: HotState, from: HotState): Promise<void> {
  let heard = false;
  const stop = to.broadcast.subscribe(TOPIC, (message) => {
    if (message === 'probe') heard = true;
  });
  try {
    await eventually(
      async () => {
        await from.broadcast.publish(TOPIC, 'probe');
        return heard;
      },
      5_000,
      'the subscription',
    );
  } finally {
    stop();
  }
}

describe('an address blocked on one instance is refused by every instance', {
  skip: needs('REDIS_URL'),
}, () => {
  let shared: Opened<HotState[]>;
  let a: AuthFailureLimit;
  let b: AuthFailureLimit;
  const errors: unknown[] = [];

  before(async () => {
    shared = await openSharedRedisHotStates(2);
    const [first, second] = shared.value as [HotState, HotState];
    const options = { perMinute: LIMIT, onError: (error: unknown) => errors.push(error) };
    a = authFailureLimits(first, options)('proxy-auth-failures');
    b = authFailureLimits(second, options)('proxy-auth-failures');
    // Both instances hear the topic before anything is blocked.
    await Promise.all([listening(second, first), listening(first, second)]);
  });
  after(() => shared?.dispose());

  test('the instance that did not count the failures refuses the address too', async () => {
    const address = '203.0.113.40';
    for (let i = 0; i < LIMIT; i++) assert.equal(await a.recordFailure(address), 0);
    assert.equal(b.blockedFor(address), 0, 'not blocked before the limit');
    const blocked = await a.recordFailure(address);
    assert.ok(blocked > 0, 'the failure past the limit blocks');
    assert.ok(a.blockedFor(address) > 0);
    await eventually(() => b.blockedFor(address) > 0, 5_000, 'the other instance to hear');
    assert.ok(b.blockedFor(address) <= blocked, 'for no longer than the block');
    // Another address is not touched.
    assert.equal(b.blockedFor('203.0.113.41'), 0);
    assert.deepEqual(errors, []);
  });

  test('a message on the topic that is not a block is ignored', async () => {
    const [first] = shared.value as [HotState];
    for (const junk of ['not json', '{"address":"203.0.113.50","ms":-1}', '{"ms":1000}', '{}']) {
      await first.broadcast.publish(TOPIC, junk);
    }
    // A real block sent after the junk arrives after it: by then the junk was judged.
    for (let i = 0; i <= LIMIT; i++) await b.recordFailure('203.0.113.51');
    await eventually(() => a.blockedFor('203.0.113.51') > 0, 5_000, 'the block after the junk');
    assert.equal(a.blockedFor('203.0.113.50'), 0);
  });
});
