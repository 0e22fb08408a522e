/**
 * Postpaid usage to Stripe Billing: the usage flush queues one meter event per usage row
 * it charged a postpaid account (meter_events_outbox, migrations/0015), and this loop
 * sends them as `ipcola_usage` events whose value is the money charged, in micro-units of
 * the account's currency (one meter for every exit type: the price per GB is already in
 * the value). The event's identifier is the row's, so a send retried after a lost answer,
 * or by another server, is the same event at Stripe, which refuses the second; only a
 * sent (or refused as a duplicate) event leaves the outbox, so the meter's sum is the
 * ledger's usage. A failure is retried with back-off, up to an hour apart.
 */
import { createHash } from 'node:crypto';
import Stripe from 'stripe';
import type { Logger } from '../log/index.ts';
import type { Database } from '../store/index.ts';
import { stripeCustomerFor } from './customers.ts';
import { inRounds } from './rounds.ts';

export const METER_EVENT_NAME = 'ipcola_usage';

export interface MeterReporterOptions {
  stripe: Stripe;
  database: Database;
  logger: Pick<Logger, 'info' | 'warn'>;
  intervalMs: number;
}

export interface MeterReporter {
  /** Sends the events that are due; resolves to how many left the outbox. */
  report(): Promise<number>;
  close(): Promise<void>;
}

interface Due {
  identifier: string;
  account_id: string;
  value_micro: number;
  hour: Date;
  attempts: number;
}

const BATCH = 100;
/** A server sending an event holds it this long, so that no other sends it meanwhile. */
const HOLD_SECONDS = 60;
const MAX_BACKOFF_SECONDS = 3_600;
/** Stripe takes events of the last 35 days; older usage is reported as of now. */
const MAX_EVENT_AGE_SECONDS = 34 * 86_400;
/** Stripe's limit on an identifier. */
const MAX_IDENTIFIER = 100;

/** The identifier Stripe gets: the row's, or its digest when longer than Stripe allows. */
export function meterIdentifier(identifier: string): string {
  return identifier.length <= MAX_IDENTIFIER
    ? identifier
    : `ipcola-${createHash('sha256').update(identifier).digest('base64url')}`;
}

/**
 * Stripe refuses an identifier it has seen: the event is counted already. Its answer is a
 * 400 invalid_request_error "An event already exists with identifier …" with no error code
 * of its own (as reported in langfuse/langfuse#16292), so its words are the one sign.
 */
function isDuplicate(error: unknown): boolean {
  if (!(error instanceof Stripe.errors.StripeInvalidRequestError)) return false;
  const message = (error.raw as { message?: string }).message ?? error.message;
  return error.code === 'resource_already_exists' || /already exists/i.test(message);
}

export function startMeterReporter(options: MeterReporterOptions): MeterReporter {
  const { stripe, database, logger } = options;

  const send = async (event: Due): Promise<boolean> => {
    try {
      const customer = await stripeCustomerFor(stripe, database, event.account_id);
      const now = Math.floor(Date.now() / 1000);
      const hour = Math.floor(event.hour.getTime() / 1000);
      await stripe.billing.meterEvents.create({
        event_name: METER_EVENT_NAME,
        payload: { stripe_customer_id: customer, value: String(event.value_micro) },
        identifier: meterIdentifier(event.identifier),
        timestamp: Math.max(hour, now - MAX_EVENT_AGE_SECONDS),
      });
    } catch (error) {
      if (!isDuplicate(error)) {
        const backoff = Math.min(MAX_BACKOFF_SECONDS, 5 * 2 ** Math.min(event.attempts - 1, 10));
        await database.query(
          `UPDATE meter_events_outbox SET last_error = $2,
             next_attempt_at = now() + make_interval(secs => $3)
           WHERE identifier = $1`,
          [event.identifier, String((error as Error).message ?? error), backoff],
        );
        logger.warn(
          { err: error, identifier: event.identifier, attempts: event.attempts },
          'stripe: sending a meter event failed; retried later',
        );
        return false;
      }
    }
    await database.query('DELETE FROM meter_events_outbox WHERE identifier = $1', [
      event.identifier,
    ]);
    return true;
  };

  const report = async (): Promise<number> => {
    const due = await database.query<Due>(
      `UPDATE meter_events_outbox SET attempts = attempts + 1,
         next_attempt_at = now() + make_interval(secs => $2)
       WHERE identifier IN (SELECT identifier FROM meter_events_outbox WHERE next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING identifier, account_id, value_micro, hour, attempts`,
      [BATCH, HOLD_SECONDS],
    );
    let sent = 0;
    for (const event of due) if (await send(event)) sent += 1;
    return sent;
  };

  const rounds = inRounds(options.intervalMs, report, (error) =>
    logger.warn({ err: error }, 'reporting meter events failed'),
  );

  return {
    report,
    close: rounds.close,
  };
}
