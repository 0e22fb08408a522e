/**
 * Customer webhooks: an account registers URLs for its billing events (balance.low,
 * balance.exhausted, key.cap_reached, topup.succeeded, topup.failed); each event is
 * delivered to every subscribed endpoint as a signed JSON POST (signature.ts), retried
 * with back-off for a day (retry-schedule.ts), and sent to public addresses only
 * (target.ts). Billing calls emit(); the API manages endpoints and lists deliveries.
 */
import type { LookupAll } from '@ipcola/shared/exit-policy';
import type { Logger } from '../log/index.ts';
import type { SealingBox } from '../secrets/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import { createDeliverer } from './deliverer.ts';
import {
  type Delivery,
  listDeliveries,
  newEvent,
  subscribedEndpoints,
  writeDeliveries,
} from './deliveries.ts';
import { createEndpoints, type Listing, type WebhookEndpoints } from './endpoints.ts';
import {
  isWebhookEventType,
  TEST_EVENT_TYPE,
  type WebhookEvent,
  type WebhookEventType,
} from './events.ts';
import { DEFAULT_RETRY_SCHEDULE, type RetrySchedule } from './retry-schedule.ts';
import { DEFAULT_TIMEOUT_MS } from './sender.ts';
import { targetRules } from './target.ts';

export type { Attempt, Delivery, DeliveryStatus } from './deliveries.ts';
export type {
  CreatedWebhookEndpoint,
  EndpointChanges,
  NewEndpoint,
  WebhookEndpoint,
  WebhookEndpoints,
} from './endpoints.ts';
export {
  isWebhookEventType,
  TEST_EVENT_TYPE,
  WEBHOOK_EVENT_TYPES,
  type WebhookEvent,
  type WebhookEventType,
} from './events.ts';
export { DEFAULT_RETRY_SCHEDULE, type RetrySchedule, retryDelayMs } from './retry-schedule.ts';
export { USER_AGENT } from './sender.ts';
export {
  SIGNATURE_HEADER,
  signatureHeader,
  type VerifyOptions,
  verifyWebhookSignature,
} from './signature.ts';

export interface WebhooksOptions {
  database: Database;
  /** Seals endpoint secrets at rest (they must be read back to sign). */
  box: SealingBox;
  /**
   * CIDRs deliveries may reach although the exit policy refuses them, and the only
   * places plain http may go (WEBHOOK_ALLOW_TARGETS).
   */
  allowTargets?: readonly string[];
  /** DNS lookup, replaceable in tests; default dns.promises.lookup. */
  lookup?: LookupAll;
  /** Default: 30 s base, one day's window (WEBHOOK_RETRY_BASE_MS sets the base). */
  retry?: Partial<RetrySchedule>;
  logger: Logger;
  /** What time it is for deliveries, retries and signatures; default the system clock. */
  clock?: () => Date;
  /** One attempt's deadline, DNS included. Default 10 s. */
  timeoutMs?: number;
  /** How often the deliverer looks for due deliveries. Default 1 s. */
  pollIntervalMs?: number;
}

/** Webhooks delivering from now on; their close goes to `keep` (closes run in reverse). */
export function startWebhooks(
  options: WebhooksOptions,
  keep: (close: () => Promise<void>) => void,
): Webhooks {
  const webhooks = createWebhooks(options);
  webhooks.start();
  keep(() => webhooks.close());
  return webhooks;
}

export interface Webhooks {
  endpoints: WebhookEndpoints;
  /**
   * Owes `event` to each of the account's enabled endpoints subscribed to its type. Given
   * `within`, the deliveries are written in that transaction: they exist exactly when the
   * change they announce does.
   */
  emit(
    accountId: string,
    type: WebhookEventType,
    data: Record<string, unknown>,
    within?: Queryable,
  ): Promise<WebhookEvent>;
  /** Sends a `webhook.test` event to one endpoint; null when it is not the account's. */
  sendTest(accountId: string, endpointId: string): Promise<Delivery | null>;
  /** The endpoint's deliveries, newest first; null when it is not the account's. */
  listDeliveries(
    accountId: string,
    endpointId: string,
    listing: Listing,
  ): Promise<Delivery[] | null>;
  /** Starts delivering (claiming due deliveries); without it, deliveries only accumulate. */
  start(): void;
  close(): Promise<void>;
}

const BATCH_SIZE = 16;

export function createWebhooks(options: WebhooksOptions): Webhooks {
  const { database } = options;
  const clock = options.clock ?? (() => new Date());
  const rules = targetRules(options.allowTargets ?? [], options.lookup);
  const endpoints = createEndpoints(database, options.box, rules);
  const deliverer = createDeliverer({
    database,
    box: options.box,
    rules,
    schedule: { ...DEFAULT_RETRY_SCHEDULE, ...options.retry },
    logger: options.logger,
    clock,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    pollIntervalMs: options.pollIntervalMs ?? 1_000,
    batchSize: BATCH_SIZE,
  });

  return {
    endpoints,
    async emit(accountId, type, data, within) {
      // Billing code is typed, but a wrong type would be owed to nobody, silently.
      if (!isWebhookEventType(type)) throw new RangeError(`${type} is not a webhook event type`);
      const now = clock();
      const event = newEvent(accountId, type, data, now);
      const db = within ?? database;
      await writeDeliveries(db, await subscribedEndpoints(db, accountId, type), event, now);
      // Within a transaction the rows are seen once it commits: the next poll finds them.
      if (!within) deliverer.wake();
      return event;
    },
    async sendTest(accountId, endpointId) {
      if (!(await endpoints.get(accountId, endpointId))) return null;
      const now = clock();
      const event = newEvent(accountId, TEST_EVENT_TYPE, { endpoint_id: endpointId }, now);
      const [id] = await writeDeliveries(database, [endpointId], event, now);
      deliverer.wake();
      return {
        id: id as string,
        endpointId,
        eventId: event.id,
        type: event.type,
        status: 'pending',
        nextAttemptAt: now,
        createdAt: now,
        attempts: [],
      };
    },
    async listDeliveries(accountId, endpointId, listing) {
      if (!(await endpoints.get(accountId, endpointId))) return null;
      return listDeliveries(database, endpointId, listing);
    },
    start: () => deliverer.start(),
    close: () => deliverer.close(),
  };
}
