import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs, isRetryableStatus, retryAfterMs } from '../src/client/retry-policy.ts';

test('back-off waits a random share of a cap that doubles per retry up to 8 s (full jitter)', () => {
  for (const [retry, cap] of [
    [1, 500],
    [2, 1_000],
    [3, 2_000],
    [5, 8_000],
    [9, 8_000],
  ] as const) {
    const waits = Array.from({ length: 2_000 }, () => backoffMs(retry, undefined));
    assert.ok(
      waits.every((wait) => wait >= 0 && wait < cap),
      `retry ${retry} within [0, ${cap})`,
    );
    // Spread over the whole range, not bunched: both ends are reached.
    assert.ok(Math.min(...waits) < cap * 0.05);
    assert.ok(Math.max(...waits) > cap * 0.95);
  }
  assert.equal(backoffMs(1, 3_000), 3_000, 'Retry-After wins');
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  assert.equal(retryAfterMs('2'), 2_000);
  assert.equal(retryAfterMs('0.5'), 500);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:07 GMT', now), 7_000);
  assert.equal(retryAfterMs('soon'), undefined);
  assert.equal(retryAfterMs(null), undefined);
});

test('429, 408, 5xx but 501, and a 409 idempotency_conflict are retried; other refusals are not', () => {
  for (const status of [408, 429, 500, 502, 503, 504]) {
    assert.equal(isRetryableStatus(status, undefined), true, String(status));
  }
  for (const status of [400, 401, 403, 404, 413, 415, 501]) {
    assert.equal(isRetryableStatus(status, undefined), false, String(status));
  }
  assert.equal(isRetryableStatus(409, 'idempotency_conflict'), true);
  assert.equal(isRetryableStatus(409, 'email_taken'), false);
});
