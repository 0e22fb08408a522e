/**
 * Payments through Stripe: Checkout Sessions to buy credit, payouts to operators through
 * Stripe Connect, postpaid usage to Stripe Billing's meter, and Stripe's webhook, verified
 * on its raw body with the library's own check and applied exactly once. The API calls checkout(), payouts and receive();
 * nothing here speaks HTTP to customers.
 */
import { isIP } from 'node:net';
import Stripe from 'stripe';
import { ipcolaError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { Database } from '../store/index.ts';
import type { Webhooks } from '../webhooks/index.ts';
import { type AutoTopUp, autoTopUpCharger } from './auto-topup.ts';
import { type CheckoutRequest, type CheckoutSession, createCheckoutSession } from './checkout.ts';
import { stripeCustomerFor } from './customers.ts';
import { type MeterReporter, startMeterReporter } from './meter-reporter.ts';
import { createPayouts, type Payouts } from './payouts.ts';
import { inRounds } from './rounds.ts';
import { createStripeClient } from './stripe-client.ts';
import { stripeUnavailable } from './stripe-errors.ts';
import { type EventOutcome, stripeEventApplier } from './stripe-events.ts';

export type { AutoTopUp } from './auto-topup.ts';
export { type CheckoutRequest, type CheckoutSession, stripeIdempotencyKey } from './checkout.ts';
export { METER_EVENT_NAME, type MeterReporter, meterIdentifier } from './meter-reporter.ts';
export type { Payout, PayoutListing, PayoutStatus } from './payout-ledger.ts';
export type { Onboarding, PayoutAccount, PayoutBalance, Payouts } from './payouts.ts';
export { createStripeClient, type StripeClientOptions } from './stripe-client.ts';
export type { EventOutcome } from './stripe-events.ts';

export interface CardPaymentsOptions {
  secretKey: string;
  webhookSecret: string;
  /** STRIPE_API_URL. */
  apiUrl: string;
  /** Where Checkout sends the customer back (PORTAL_URL, or the API's public address). */
  portalUrl: () => string;
  /** PAYOUT_HOLD_DAYS and PAYOUT_MINIMUM (micro-units). */
  payoutHoldDays: number;
  payoutMinimumMicro: number;
  /** How often postpaid usage waiting in the outbox is sent to Stripe's meter. */
  meterIntervalMs: number;
  /** How often payouts Stripe left unanswered are settled (also once at start-up). */
  payoutSweepIntervalMs: number;
  database: Database;
  webhooks: Pick<Webhooks, 'emit'>;
  logger: Logger;
}

export interface CardPayments {
  /** A Checkout Session for the account to pay `amountMicro`; not_ready when Stripe does not answer. */
  checkout(request: CheckoutRequest): Promise<CheckoutSession>;
  /**
   * Verifies one webhook delivery (raw body, Stripe-Signature header, five minutes'
   * tolerance) and applies its event once; invalid_request when it does not verify, and
   * then nothing is written.
   */
  receive(rawBody: Buffer, signature: string | undefined): Promise<EventOutcome>;
  /** Operators' connected accounts and payouts. */
  payouts: Payouts;
  /** Charges saved cards of accounts whose balance crossed below their threshold. */
  autoTopUp: AutoTopUp;
  /** Sends postpaid usage to Stripe's meter, every meterIntervalMs until closed. */
  meter: MeterReporter;
  /** Stops the rounds (meter, pending payouts), waiting for the ones under way. */
  close(): Promise<void>;
}

export function createCardPayments(options: CardPaymentsOptions): CardPayments {
  const stripe = createStripeClient({ secretKey: options.secretKey, apiUrl: options.apiUrl });
  const logger = options.logger.child({ role: 'payments' });
  const apply = stripeEventApplier({
    stripe,
    database: options.database,
    webhooks: options.webhooks,
    logger,
  });

  const payouts = createPayouts({
    stripe,
    database: options.database,
    logger,
    holdDays: options.payoutHoldDays,
    minimumMicro: options.payoutMinimumMicro,
    portalUrl: options.portalUrl,
  });
  // Payouts a stopped server left pending are settled at start-up, then every few minutes.
  const payoutSweep = inRounds(options.payoutSweepIntervalMs, payouts.settlePending, (error) =>
    logger.warn({ err: error }, 'settling pending payouts failed'),
  );
  void payoutSweep.runNow();
  const meter = startMeterReporter({
    stripe,
    database: options.database,
    logger,
    intervalMs: options.meterIntervalMs,
  });

  return {
    async checkout(request) {
      try {
        const customer = await stripeCustomerFor(stripe, options.database, request.accountId);
        return await createCheckoutSession(stripe, options.portalUrl(), { ...request, customer });
      } catch (error) {
        throw stripeUnavailable(error) ?? error;
      }
    },
    payouts,
    async receive(rawBody, signature) {
      if (!signature)
        throw ipcolaError('invalid_request', 'The Stripe-Signature header is missing');
      let event: Stripe.Event;
      try {
        event = stripe.webhooks.constructEvent(rawBody, signature, options.webhookSecret);
      } catch (error) {
        if (!(error instanceof Stripe.errors.StripeSignatureVerificationError)) throw error;
        throw ipcolaError(
          'invalid_request',
          `The Stripe-Signature does not verify: ${error.message}`,
        );
      }
      return apply(event);
    },
    autoTopUp: autoTopUpCharger({
      stripe,
      database: options.database,
      webhooks: options.webhooks,
      logger,
    }),
    meter,
    async close() {
      await Promise.all([meter.close(), payoutSweep.close()]);
    },
  };
}

/** The settings card payments need (STRIPE_*, PORTAL_URL, PUBLIC_HOST, PAYOUT_*). */
export interface CardPaymentSettings {
  readonly payoutHoldDays: number;
  readonly payoutMinimumMicro: number;
  readonly stripeSecretKey: string | undefined;
  readonly stripeWebhookSecret: string | undefined;
  readonly stripeApiUrl: string;
  readonly portalUrl: string | undefined;
  readonly publicHost: string;
  /** Set when the API serves TLS: its own address is then https. */
  readonly tls?: object | undefined;
}

/**
 * Card payments and payouts when Stripe is configured, else undefined (checkout and
 * payouts then answer billing_disabled). Checkout and Connect onboarding return people to
 * PORTAL_URL, else to this API.
 */
export function cardPaymentsFor(
  settings: CardPaymentSettings,
  parts: Pick<CardPaymentsOptions, 'database' | 'webhooks' | 'logger'> & {
    /** The API's port once it listens. */
    ports: { readonly api: number };
    /** Takes what to close at shutdown (the meter's loop). */
    keep: (close: () => Promise<void>) => void;
  },
): CardPayments | undefined {
  const { stripeSecretKey, stripeWebhookSecret, publicHost } = settings;
  if (!stripeSecretKey || !stripeWebhookSecret) return undefined;
  const host = isIP(publicHost) === 6 ? `[${publicHost}]` : publicHost;
  const payments = createCardPayments({
    secretKey: stripeSecretKey,
    webhookSecret: stripeWebhookSecret,
    apiUrl: settings.stripeApiUrl,
    portalUrl: () =>
      settings.portalUrl ?? `${settings.tls ? 'https' : 'http'}://${host}:${parts.ports.api}/`,
    payoutHoldDays: settings.payoutHoldDays,
    payoutMinimumMicro: settings.payoutMinimumMicro,
    meterIntervalMs: METER_INTERVAL_MS,
    payoutSweepIntervalMs: PAYOUT_SWEEP_INTERVAL_MS,
    database: parts.database,
    webhooks: parts.webhooks,
    logger: parts.logger,
  });
  parts.keep(() => payments.close());
  return payments;
}

/** Postpaid usage reaches Stripe within seconds of its flush, a few queries a minute when idle. */
const METER_INTERVAL_MS = 2_000;
/**
 * A payout is left pending only when Stripe did not answer, and the operator's next
 * request settles it too: a sweep every five minutes bounds the wait without asking
 * Stripe often.
 */
const PAYOUT_SWEEP_INTERVAL_MS = 5 * 60_000;
