/**
 * Work done in rounds every so often (postpaid usage to Stripe's meter, pending payouts):
 * one round at a time, a tick during a slow round is skipped, a failed round is logged
 * and the next one tries again, and close() waits for the round under way.
 */
export interface Rounds {
  /** Starts a round now, unless one is under way; resolves when that round ends. */
  runNow(): Promise<void>;
  close(): Promise<void>;
}

export function inRounds(
  intervalMs: number,
  round: () => Promise<unknown>,
  failed: (error: unknown) => void,
): Rounds {
  let running: Promise<void> | null = null;
  const runNow = () => {
    running ??= round()
      .then(() => undefined, failed)
      .finally(() => {
        running = null;
      });
    return running;
  };
  const timer = setInterval(runNow, intervalMs);
  timer.unref();
  return {
    runNow,
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}
