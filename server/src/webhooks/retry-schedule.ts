/**
 * When a failed delivery is tried again: 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h
 * after each failure (with the default 30 s base), each with ±20 % jitter so endpoints
 * that failed together are not all retried in the same second, and never past the window
 * (a day after the first attempt): the last retry is at its end, and a failure then is
 * final. The base scales every step, so tests can run the schedule in milliseconds.
 */

export interface RetrySchedule {
  /** The first retry's delay; the later ones are multiples of it. */
  baseMs: number;
  /** How long after the first attempt a delivery is still retried. */
  windowMs: number;
}

export const DEFAULT_RETRY_SCHEDULE: RetrySchedule = {
  baseMs: 30_000,
  windowMs: 24 * 60 * 60 * 1000,
};

/** Multiples of the base after the 1st, 2nd, ... failure; the last doubles from there on. */
const STEPS = [1, 4, 20, 60, 120, 240, 480, 960];
const JITTER = 0.2;

/** The delay after `failures` failed attempts (1 or more), jitter included. */
export function retryDelayMs(
  failures: number,
  baseMs: number,
  random: () => number = Math.random,
): number {
  const last = STEPS.length;
  const step =
    failures <= last
      ? (STEPS[Math.max(failures, 1) - 1] as number)
      : (STEPS[last - 1] as number) * 2 ** (failures - last);
  return Math.round(step * baseMs * (1 - JITTER + 2 * JITTER * random()));
}

/** When to try again after a failure at `now`; null when the window is over (the delivery failed). */
export function nextAttemptAt(
  schedule: RetrySchedule,
  firstAttemptAt: Date,
  now: Date,
  failures: number,
  random?: () => number,
): Date | null {
  const windowEnd = firstAttemptAt.getTime() + schedule.windowMs;
  if (now.getTime() >= windowEnd) return null;
  return new Date(
    Math.min(now.getTime() + retryDelayMs(failures, schedule.baseMs, random), windowEnd),
  );
}
