import type { Socket } from 'node:net';
import type { Logger } from '../log/index.ts';
import type { CounterStore, Database, HotState } from '../store/index.ts';
import {
  parseUsageField,
  USAGE_GROUP,
  type UsageMetric,
  type UsageOwner,
  usageFieldPrefix,
} from './usage-field.ts';
import { startUsageFlusher } from './usage-flusher.ts';

export * from './usage-field.ts';
export { type FlushResult, startUsageFlusher, type UsageFlusher } from './usage-flusher.ts';

export interface Usage extends UsageOwner {
  /** Bytes from the customer into the gateway. */
  up: number;
  /** Bytes from the gateway to the customer. */
  down: number;
  requests: number;
  /**
   * What these bytes took from each allowance bucket (bytes from a key's, money at the
   * exit's price from an account's): it leaves this instance's hold when pushed.
   */
  used?: Readonly<Record<string, number>>;
}

export interface UsageMeter {
  /** Adds usage; cheap, in-process. It reaches hot state on the next push. */
  record(usage: Usage): void;
  /** Bytes (up + down) per key recorded here and not yet pushed to hot state. */
  unpushed(): Map<string, number>;
  /** Pushes everything recorded so far to hot state. */
  push(): Promise<void>;
  /** Pushes and stops the timer. */
  close(): Promise<void>;
}

/**
 * Aggregates usage in-process and pushes it to the hot-state counters every
 * pushIntervalMs: per-request writes to Redis would cost more than the traffic they count.
 * A push that fails keeps its counts for the next one.
 */
export function createUsageMeter(
  counters: CounterStore,
  options: { pushIntervalMs: number; now?: () => number; onError?: (error: unknown) => void },
): UsageMeter {
  const now = options.now ?? Date.now;
  let pending = new Map<string, number>();
  /** What `pending` took from each allowance bucket. */
  let pendingUsed = new Map<string, number>();
  let pushing: Promise<void> | undefined;

  const push = async (): Promise<void> => {
    await pushing; // one push at a time keeps the order of retries simple
    if (pending.size === 0) return;
    const batch = pending;
    const used = pendingUsed;
    pending = new Map();
    pendingUsed = new Map();
    pushing = counters
      .add(USAGE_GROUP, Object.fromEntries(batch), Object.fromEntries(used))
      .catch((error) => {
        for (const [field, by] of batch) increase(pending, field, by);
        for (const [bucket, by] of used) increase(pendingUsed, bucket, by);
        options.onError?.(error);
      });
    await pushing;
    pushing = undefined;
  };

  const timer = setInterval(() => void push(), options.pushIntervalMs);
  timer.unref();

  return {
    record(usage) {
      // Runs as every tunnel and request ends: the field's prefix is built once.
      const prefix = usageFieldPrefix(usage, Math.floor(now() / 3_600_000));
      const metrics: Array<[UsageMetric, number]> = [
        ['up', usage.up],
        ['down', usage.down],
        ['requests', usage.requests],
      ];
      for (const [metric, by] of metrics) {
        if (by > 0) increase(pending, `${prefix}${metric}`, by);
      }
      const { used } = usage;
      if (used) {
        for (const bucket in used) {
          const amount = used[bucket] ?? 0;
          if (amount > 0) increase(pendingUsed, bucket, amount);
        }
      }
    },
    unpushed() {
      const bytes = new Map<string, number>();
      for (const [field, value] of pending) addBytes(bytes, field, value);
      return bytes;
    },
    push,
    async close() {
      clearInterval(timer);
      await push();
    },
  };
}

function increase(counts: Map<string, number>, key: string, by: number): void {
  counts.set(key, (counts.get(key) ?? 0) + by);
}

function addBytes(bytes: Map<string, number>, field: string, value: number): void {
  const parsed = parseUsageField(field);
  if (!parsed || parsed.metric === 'requests') return;
  bytes.set(parsed.keyId, (bytes.get(parsed.keyId) ?? 0) + value);
}

/**
 * Hands out the bytes a client socket moved since the last call, so that every byte on
 * a keep-alive connection is attributed to exactly one request (or tunnel) and none twice.
 */
export class SocketMeter {
  #read: number;
  #written = 0;
  /** `alreadyRead`: bytes before the customer's (a balancer's PROXY header). */
  constructor(
    private readonly socket: Socket,
    alreadyRead = 0,
  ) {
    this.#read = alreadyRead;
  }

  take(): { up: number; down: number } {
    const read = this.socket.bytesRead;
    const written = this.socket.bytesWritten;
    const delta = { up: read - this.#read, down: written - this.#written };
    this.#read = read;
    this.#written = written;
    return delta;
  }
}

export interface MeteringOptions {
  hotState: Pick<HotState, 'counters' | 'allowances'>;
  database: Database;
  /** The currency usage is priced and debited in. */
  currency: string;
  flushIntervalMs: number;
  logger: Logger;
  /** Told of the bytes as they are metered for billing (the metrics): one count, two readers. */
  countBytes(up: number, down: number): void;
  /** The accounts each committed batch charged (balance alerts, auto top-up). */
  onCharged?: (accountIds: string[]) => Promise<void>;
}

/**
 * Usage as it is billed: recorded in-process, pushed to the hot-state counters every
 * second and flushed from there into the database. Starts the flusher, then the meter,
 * handing each one's close to `keep` as it starts: closes run in reverse, so the meter
 * pushes its last counts before the last flush.
 */
export function startMetering(
  options: MeteringOptions,
  keep: (close: () => Promise<void>) => void,
): UsageMeter {
  const { hotState, logger, onCharged } = options;
  const flusher = startUsageFlusher({
    counters: hotState.counters,
    allowances: hotState.allowances,
    database: options.database,
    currency: options.currency,
    intervalMs: options.flushIntervalMs,
    onError: (error) => logger.warn({ err: error }, 'usage flush failed; retried on the next one'),
    onOrphans: (batch, keyIds) =>
      logger.error({ batch, keyIds }, 'usage of keys that no longer exist was not recorded'),
    ...(onCharged && {
      onCharged: (accountIds: string[]) =>
        onCharged(accountIds).catch((error: unknown) =>
          logger.warn({ err: error }, 'balance alerts or auto top-up failed'),
        ),
    }),
  });
  keep(() => flusher.close());
  const meter = createUsageMeter(hotState.counters, {
    pushIntervalMs: 1_000,
    onError: (error) => logger.warn({ err: error }, 'usage push failed; kept for the next one'),
  });
  const usage: UsageMeter = {
    ...meter,
    record(recorded) {
      options.countBytes(recorded.up, recorded.down);
      meter.record(recorded);
    },
  };
  keep(() => usage.close());
  return usage;
}
