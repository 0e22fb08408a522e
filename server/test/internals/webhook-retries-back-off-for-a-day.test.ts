import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_RETRY_SCHEDULE,
  nextAttemptAt,
  retryDelayMs,
} from '../../src/webhooks/retry-schedule.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const middle = () => 0.5;

describe('webhook retry schedule', () => {
  test('the delays grow from 30 s to 8 h, then double', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((failures) =>
      retryDelayMs(failures, DEFAULT_RETRY_SCHEDULE.baseMs, middle),
    );
    assert.deepEqual(delays, [
      30_000,
      2 * MINUTE,
      10 * MINUTE,
      30 * MINUTE,
      HOUR,
      2 * HOUR,
      4 * HOUR,
      8 * HOUR,
      16 * HOUR,
    ]);
  });

  test('jitter keeps each delay within a fifth of its step', () => {
    assert.equal(
      retryDelayMs(1, 30_000, () => 0),
      24_000,
    );
    assert.equal(
      retryDelayMs(1, 30_000, () => 0.999_999),
      36_000,
    );
  });

  test('the base scales every step, so tests run the schedule in milliseconds', () => {
    assert.deepEqual(
      [1, 2, 3].map((failures) => retryDelayMs(failures, 5, middle)),
      [5, 20, 100],
    );
  });

  test('the last retry is at the end of the day, and a failure after it is final', () => {
    const first = new Date('2026-12-01T00:00:00Z');
    const at = (ms: number) => new Date(first.getTime() + ms);
    assert.deepEqual(nextAttemptAt(DEFAULT_RETRY_SCHEDULE, first, first, 1, middle), at(30_000));
    assert.deepEqual(
      nextAttemptAt(DEFAULT_RETRY_SCHEDULE, first, at(8 * HOUR), 8, middle),
      at(16 * HOUR),
    );
    // After the ninth failure (about 16 h in) the next step, 16 h, would pass the day.
    assert.deepEqual(
      nextAttemptAt(DEFAULT_RETRY_SCHEDULE, first, at(16 * HOUR), 9, middle),
      at(24 * HOUR),
    );
    assert.equal(nextAttemptAt(DEFAULT_RETRY_SCHEDULE, first, at(24 * HOUR), 10, middle), null);
  });
});
