/**
 * What customer webhooks announce. Billing emits the account events; `webhook.test` is
 * only ever sent to one endpoint, when its owner asks for it.
 */

export const WEBHOOK_EVENT_TYPES = [
  'balance.low',
  'balance.exhausted',
  'key.cap_reached',
  'topup.succeeded',
  'topup.failed',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The event POST /v1/webhooks/{id}/test sends; endpoints cannot subscribe to it. */
export const TEST_EVENT_TYPE = 'webhook.test';

export function isWebhookEventType(type: string): type is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);
}

/** The JSON body of every delivery, the same on every attempt. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType | typeof TEST_EVENT_TYPE;
  /** Unix seconds when the event happened. */
  created: number;
  account_id: string;
  data: Record<string, unknown>;
}
