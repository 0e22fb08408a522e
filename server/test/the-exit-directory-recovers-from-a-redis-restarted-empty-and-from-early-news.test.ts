/**
 * The exit directory on the edges of its sources of truth: news of a node that arrives
 * before its holder's announcement was read is not lost (it is indexed as soon as the
 * holder is known, not at the next resync 15 s later), and a Redis that restarts empty
 * (without its append-only file) gets every instance's registrations again as soon as
 * the instances reconnect, instead of an hour later.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { PlacedExit } from '../src/cluster/exit-directory.ts';
import { createMemoryHotState, type HotState } from '../src/store/index.ts';
import { openRedisHotState } from '../src/store/redis-hot-state.ts';
import { eventually, quietLogger } from './support/engines.ts';
import { testDirectory } from './support/exit-directories.ts';
import { privateRedis } from './support/private-services.ts';

const NODE = 'node-1';
const EXITS: PlacedExit[] = [{ ip: '127.0.0.12', country: 'de' }];

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** One instance's directory over `hotState`, and the node's exits in its index. */
function instance(hotState: HotState, id: string, holds: boolean) {
  const { directory, index } = testDirectory(hotState, id, { isLocalAgent: () => holds });
  cleanups.push(() => directory.close());
  return { directory, exits: () => index.get(NODE) };
}

test('a node announced before its holder was known is leasable at once, not at the next resync', async () => {
  const hotState = createMemoryHotState();
  const gateway = instance(hotState, 'gateway', false);
  await gateway.directory.resync();
  // The holder starts after the gateway read the instances: its node's news comes first.
  const holder = instance(hotState, 'holder', true);
  // Its own first round (announcement, registry read) is over before its agent arrives,
  // so the node's news is sent once.
  await holder.directory.resync();
  await new Promise((resolve) => setImmediate(resolve));
  holder.directory.addNodeExits(NODE, EXITS);
  // The resync is 15 s away; the node must not wait for it.
  await eventually(() => gateway.exits() !== undefined, 2_000, 'the node in the gateway index');
  assert.deepEqual(gateway.exits(), EXITS);
});

test('a Redis restarted empty has every registration again once the instances reconnect', async () => {
  const redis = await privateRedis();
  cleanups.push(() => redis.dispose());
  const open = async () => {
    const hotState = await openRedisHotState(redis.url, quietLogger, { prefix: 'ipcola:t:' });
    cleanups.push(() => hotState.close());
    return hotState;
  };
  const holder = instance(await open(), 'holder', true);
  const gateway = instance(await open(), 'gateway', false);
  await holder.directory.resync();
  await gateway.directory.resync();
  holder.directory.addNodeExits(NODE, EXITS);
  await eventually(() => gateway.exits() !== undefined, 5_000, 'the node in the gateway index');

  // SIGKILL and start again with nothing on disk: the registry is empty.
  await redis.stop();
  await redis.start();
  // The gateway's next full read must find the holder's node registered again.
  await eventually(
    async () => {
      // Only a read that worked counts: one that failed changed nothing.
      const read = await gateway.directory.resync().then(
        () => true,
        () => false,
      );
      return read && gateway.exits() !== undefined;
    },
    10_000,
    'the node registered again after the restart',
  );
  // And it stays: another read a moment later still has it.
  await gateway.directory.resync();
  assert.deepEqual(gateway.exits(), EXITS);
});
