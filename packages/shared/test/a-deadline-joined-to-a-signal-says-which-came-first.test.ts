import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { deadlineOr } from '../src/protocol/index.ts';

/** Waits for the abort; the deadline's timer is unref'd, so something must hold the loop. */
async function aborted(signal: AbortSignal): Promise<void> {
  const hold = setInterval(() => {}, 1_000);
  try {
    await once(signal, 'abort');
  } finally {
    clearInterval(hold);
  }
}

describe('a deadline joined to a signal says which came first', () => {
  test('the deadline passes first: a TimeoutError, and timedOut() says so', async () => {
    const other = new AbortController();
    const { signal, timedOut, clear } = deadlineOr(20, other.signal);
    await aborted(signal);
    assert.equal((signal.reason as DOMException).name, 'TimeoutError');
    assert.equal(timedOut(), true);
    other.abort(new Error('too late'));
    assert.equal((signal.reason as DOMException).name, 'TimeoutError', 'the first reason stays');
    clear();
  });

  test('the other signal aborts first: its reason, and it is not a time-out', async () => {
    const other = new AbortController();
    const { signal, timedOut, clear } = deadlineOr(60_000, other.signal);
    const reason = new Error('the client went away');
    other.abort(reason);
    assert.equal(signal.reason, reason);
    assert.equal(timedOut(), false);
    clear();
  });

  test('an already aborted signal aborts it at once', () => {
    const reason = new Error('gone before');
    const { signal, timedOut, clear } = deadlineOr(60_000, AbortSignal.abort(reason));
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason, reason);
    assert.equal(timedOut(), false);
    clear();
  });

  test('clear() stops both watches: nothing aborts it afterwards', async () => {
    const other = new AbortController();
    const { signal, clear } = deadlineOr(10, other.signal);
    clear();
    other.abort(new Error('after clear'));
    // Past the deadline's time, polled: the timer was cleared, so no abort came.
    const until = Date.now() + 50;
    while (Date.now() < until) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(signal.aborted, false);
  });

  test('without another signal it is a plain deadline', async () => {
    const { signal, timedOut } = deadlineOr(10, undefined);
    await aborted(signal);
    assert.equal(timedOut(), true);
  });
});
