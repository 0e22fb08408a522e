import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { type Pingable, PingTimeoutError, startHeartbeat } from '@ipcola/shared/protocol';

/** A connection whose peer answers PINGs as told, and was last heard when told. */
class FakeConnection extends EventEmitter implements Pingable {
  destroyed = false;
  closed = false;
  lastHeardAt: number | undefined;
  answers = true;
  pings = 0;
  ping(callback: (error: Error | null, durationMs: number) => void): boolean {
    this.pings += 1;
    if (this.answers) queueMicrotask(() => callback(null, 1));
    return true;
  }
}

beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'setTimeout'] }));
afterEach(() => mock.timers.reset());

/** Lets the timers of `ms` run, and the PING answers they cause. */
async function pass(ms: number): Promise<void> {
  for (let at = 0; at < ms; at += 100) {
    mock.timers.tick(100);
    await Promise.resolve();
  }
}

describe('heart-beats', () => {
  test('a peer that answers is PINGed every interval and kept', async () => {
    const connection = new FakeConnection();
    const dead: Error[] = [];
    const beat = startHeartbeat(connection, {
      intervalMs: 1_000,
      timeoutMs: 2_000,
      onDead: (error) => dead.push(error),
    });
    await pass(10_000);
    assert.equal(connection.pings, 10);
    assert.deepEqual(dead, []);
    beat.stop();
  });

  test('a peer that stops answering is declared dead once, after the timeout', async () => {
    const connection = new FakeConnection();
    connection.answers = false;
    const dead: Error[] = [];
    startHeartbeat(connection, {
      intervalMs: 1_000,
      timeoutMs: 2_000,
      onDead: (e) => dead.push(e),
    });
    await pass(2_900);
    assert.equal(dead.length, 0);
    await pass(200);
    assert.equal(dead.length, 1);
    assert.ok(dead[0] instanceof PingTimeoutError);
    await pass(10_000);
    assert.equal(dead.length, 1);
  });

  test('whenSilent: a peer heard within the interval is not PINGed at all', async () => {
    const connection = new FakeConnection();
    // Heard just now, whenever asked: it PINGs us or sends data all the time.
    Object.defineProperty(connection, 'lastHeardAt', { get: () => performance.now() });
    const dead: Error[] = [];
    const beat = startHeartbeat(connection, {
      intervalMs: 1_000,
      timeoutMs: 2_000,
      whenSilent: true,
      onDead: (error) => dead.push(error),
    });
    await pass(10_000);
    assert.equal(connection.pings, 0);
    assert.deepEqual(dead, []);
    beat.stop();
  });

  test('whenSilent: a peer silent for an interval is PINGed, and declared dead if it does not answer', async () => {
    const connection = new FakeConnection();
    connection.lastHeardAt = performance.now() - 60_000;
    connection.answers = false;
    const dead: Error[] = [];
    startHeartbeat(connection, {
      intervalMs: 1_000,
      timeoutMs: 2_000,
      whenSilent: true,
      onDead: (error) => dead.push(error),
    });
    await pass(3_100);
    assert.equal(connection.pings, 1);
    assert.equal(dead.length, 1);
  });
});
