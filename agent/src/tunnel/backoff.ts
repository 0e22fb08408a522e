/**
 * Reconnect delays. Exponential so that a fleet of agents does not hammer a hub that
 * is restarting; jittered so that they do not all come back in the same second; with
 * a floor of half the step so that no agent retries in a tight loop.
 */

export interface BackoffOptions {
  /** First delay (before jitter). */
  readonly initialMs: number;
  /** Largest delay (before jitter). */
  readonly maxMs: number;
}

/** Delay before retry number `attempt` (1-based): a random point in [step/2, step]. */
export function backoffDelay(
  attempt: number,
  { initialMs, maxMs }: BackoffOptions,
  random: () => number = Math.random,
): number {
  const step = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}
