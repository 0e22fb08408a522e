/**
 * The delivery loop: claims due deliveries, attempts them in parallel, settles each
 * (succeeded on 2xx, else retried on the schedule until its window ends, then failed),
 * and sleeps until the next poll or until an emit in this process wakes it. Any number
 * of servers may run one over the same database (see deliveries.ts for the claim).
 */
import type { Logger } from '../log/index.ts';
import type { SealingBox } from '../secrets/index.ts';
import type { Database } from '../store/index.ts';
import { type ClaimedDelivery, claimDue, release, settle } from './deliveries.ts';
import { nextAttemptAt, type RetrySchedule } from './retry-schedule.ts';
import { send } from './sender.ts';
import type { TargetRules } from './target.ts';

export interface DelivererOptions {
  database: Database;
  box: SealingBox;
  rules: TargetRules;
  schedule: RetrySchedule;
  logger: Logger;
  clock: () => Date;
  timeoutMs: number;
  pollIntervalMs: number;
  /** Deliveries claimed (and attempted in parallel) at a time. */
  batchSize: number;
}

export interface Deliverer {
  start(): void;
  /** Look for due deliveries now rather than at the next poll. */
  wake(): void;
  /** Stops claiming; attempts under way are abandoned and given back, due at once. */
  close(): Promise<void>;
}

export function createDeliverer(options: DelivererOptions): Deliverer {
  const { database, logger, clock } = options;
  // Far longer than an attempt can take, so a claim lapses only for a server that died.
  const claimMs = Math.max(60_000, options.timeoutMs * 3);
  const stopping = new AbortController();
  let running: Promise<void> | undefined;
  let wakeUp: (() => void) | undefined;
  let woken = false;

  const attempt = async (claimed: ClaimedDelivery) => {
    const at = clock();
    const started = performance.now();
    let secret: string;
    try {
      secret = options.box.open(claimed.sealedSecret, claimed.endpointId);
    } catch (error) {
      // Retrying cannot help: the delivery fails at once, visibly, instead of lapsing forever.
      logger.error({ err: error, endpoint: claimed.endpointId }, 'webhook secret does not open');
      await settle(
        database,
        claimed,
        { at, statusCode: null, error: 'internal_error', durationMs: 0 },
        { status: 'failed', next: null },
      );
      return;
    }
    const result = await send(
      {
        url: claimed.url,
        payload: claimed.payload,
        secret,
        timestamp: Math.floor(at.getTime() / 1000),
      },
      options.rules,
      options.timeoutMs,
      stopping.signal,
    );
    if ('aborted' in result) {
      await release(database, claimed, clock());
      return;
    }
    const durationMs = performance.now() - started;
    const succeeded =
      result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    const next = succeeded
      ? null
      : nextAttemptAt(options.schedule, claimed.firstAttemptAt, clock(), claimed.attemptCount + 1);
    await settle(
      database,
      claimed,
      { at, statusCode: result.statusCode, error: result.error, durationMs },
      { status: succeeded ? 'succeeded' : next ? 'pending' : 'failed', next },
    );
  };

  const runOnce = async (): Promise<number> => {
    const now = clock();
    const claimed = await claimDue(
      database,
      now,
      new Date(now.getTime() + claimMs),
      options.batchSize,
    );
    await Promise.all(
      claimed.map((delivery) =>
        attempt(delivery).catch((error) =>
          logger.warn({ err: error, delivery: delivery.id }, 'webhook attempt not recorded'),
        ),
      ),
    );
    return claimed.length;
  };

  const pause = () =>
    new Promise<void>((resolve) => {
      if (woken || stopping.signal.aborted) return resolve();
      const timer = setTimeout(done, options.pollIntervalMs);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });

  const loop = async () => {
    while (!stopping.signal.aborted) {
      woken = false;
      let claimed = 0;
      try {
        claimed = await runOnce();
      } catch (error) {
        logger.warn({ err: error }, 'claiming webhook deliveries failed; retried at the next poll');
      }
      if (claimed < options.batchSize) await pause();
    }
  };

  return {
    start() {
      running ??= loop();
    },
    wake() {
      woken = true;
      wakeUp?.();
    },
    async close() {
      stopping.abort();
      wakeUp?.();
      await running;
    },
  };
}
