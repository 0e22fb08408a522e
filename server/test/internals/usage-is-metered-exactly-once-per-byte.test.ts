import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import {
  createUsageMeter,
  parseUsageField,
  SocketMeter,
  USAGE_GROUP,
  usageField,
} from '../../src/metering/index.ts';
import { type CounterStore, createMemoryHotState } from '../../src/store/index.ts';

const HOUR = 3_600_000;

test('recorded usage is summed per key, node, exit country and hour and pushed to hot state', async () => {
  const hot = createMemoryHotState();
  let now = 5 * HOUR + 10;
  const meter = createUsageMeter(hot.counters, { pushIntervalMs: 60_000, now: () => now });
  const n1 = { keyId: 'k1', nodeId: 'n1', country: 'de' };
  const n2 = { keyId: 'k1', nodeId: 'n2', country: '' };
  const n2us = { keyId: 'k1', nodeId: 'n2', country: 'us' };
  meter.record({ ...n1, up: 100, down: 1000, requests: 1 });
  meter.record({ ...n1, up: 50, down: 0, requests: 1 });
  meter.record({ ...n2, up: 7, down: 8, requests: 0 });
  // The same node and key through an exit of another country is a separate bucket.
  meter.record({ ...n2us, up: 3, down: 4, requests: 1 });
  now = 6 * HOUR; // the next hour is a separate bucket
  meter.record({ ...n1, up: 1, down: 2, requests: 1 });
  assert.deepEqual(
    await hot.counters.read(USAGE_GROUP),
    {},
    'nothing reaches hot state before a push',
  );
  await meter.close();
  assert.deepEqual(await hot.counters.read(USAGE_GROUP), {
    [usageField(n1, 5, 'up')]: 150,
    [usageField(n1, 5, 'down')]: 1000,
    [usageField(n1, 5, 'requests')]: 2,
    [usageField(n2, 5, 'up')]: 7,
    [usageField(n2, 5, 'down')]: 8,
    [usageField(n2us, 5, 'up')]: 3,
    [usageField(n2us, 5, 'down')]: 4,
    [usageField(n2us, 5, 'requests')]: 1,
    [usageField(n1, 6, 'up')]: 1,
    [usageField(n1, 6, 'down')]: 2,
    [usageField(n1, 6, 'requests')]: 1,
  });
  assert.deepEqual(parseUsageField(usageField(n2us, 5, 'down')), {
    keyId: 'k1',
    nodeId: 'n2',
    country: 'us',
    hour: 5,
    metric: 'down',
  });
  // Counters written before countries were kept (left in Redis across an upgrade) still count.
  assert.deepEqual(parseUsageField('k1|n2|5|up'), {
    keyId: 'k1',
    nodeId: 'n2',
    country: '',
    hour: 5,
    metric: 'up',
  });
  // A country outside the form is counted as unknown rather than making the field unreadable.
  for (const country of ['DE', 'x|y', 'usa']) {
    const field = usageField({ keyId: 'k1', nodeId: 'n2', country }, 5, 'up');
    assert.equal(parseUsageField(field)?.country, '', country);
  }
  assert.equal(parseUsageField('k1|n2|x|down'), null);
  assert.equal(parseUsageField('k1|n2|usa|5|down'), null);
  assert.equal(parseUsageField('k1|n2|de|5|sideways'), null);
  assert.equal(parseUsageField('k1|n2|de|5|up|extra'), null);
  await hot.close();
});

test('a push that fails keeps its counts for the next push: nothing lost, nothing doubled', async () => {
  const hot = createMemoryHotState();
  let failNext = true;
  // Fault injection around the real in-process store: the first write fails like a Redis outage.
  const flaky: CounterStore = {
    ...hot.counters,
    add: (group, deltas) => {
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('redis down'));
      }
      return hot.counters.add(group, deltas);
    },
  };
  const errors: unknown[] = [];
  const meter = createUsageMeter(flaky, { pushIntervalMs: 60_000, onError: (e) => errors.push(e) });
  meter.record({ keyId: 'k', nodeId: 'n', country: 'de', up: 10, down: 20, requests: 1 });
  await meter.push();
  assert.equal(errors.length, 1);
  assert.deepEqual(await hot.counters.read(USAGE_GROUP), {});
  meter.record({ keyId: 'k', nodeId: 'n', country: 'de', up: 1, down: 2, requests: 1 });
  await meter.close();
  const counts = Object.entries(await hot.counters.read(USAGE_GROUP)).map(([field, value]) => [
    parseUsageField(field)?.metric,
    value,
  ]);
  assert.deepEqual(Object.fromEntries(counts), { up: 11, down: 22, requests: 2 });
  await hot.close();
});

test('a socket meter hands out each byte of a connection exactly once', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [peer] = await accepted;
  const meter = new SocketMeter(peer);
  try {
    const read = (n: number) =>
      new Promise<void>((resolve) => {
        let got = 0;
        const onData = (chunk: Buffer) => {
          got += chunk.length;
          if (got >= n) {
            peer.off('data', onData);
            resolve();
          }
        };
        peer.on('data', onData);
      });
    const arrived = read(3000);
    client.write(Buffer.alloc(3000));
    await arrived;
    await new Promise<void>((resolve) => peer.write(Buffer.alloc(700), () => resolve()));
    assert.deepEqual(meter.take(), { up: 3000, down: 700 });
    assert.deepEqual(meter.take(), { up: 0, down: 0 }, 'already handed out');
    const more = read(5);
    client.write('hello');
    await more;
    assert.deepEqual(meter.take(), { up: 5, down: 0 });
  } finally {
    client.destroy();
    peer.destroy();
    server.close();
  }
});
