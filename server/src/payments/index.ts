/**
 * Card payments through Stripe: Checkout Sessions to buy credit, and Stripe's webhook,
 * verified on its raw body with the library's own check and applied exactly once. The API
 * calls checkout() and receive(); nothing here speaks HTTP to customers.
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
import { createStripeClient } from './stripe-client.ts';
import { type EventOutcome, stripeEventApplier } from './stripe-events.ts';

export type { AutoTopUp } from './auto-topup.ts';
export { type CheckoutRequest, type CheckoutSession, stripeIdempotencyKey } from './checkout.ts';
export { createStripeClient, type StripeClientOptions } from './stripe-client.ts';
export type { EventOutcome } from './stripe-events.ts';

export interface CardPaymentsOptions {
  secretKey: string;
  webhookSecret: string;
  /** STRIPE_API_URL. */
  apiUrl: string;
  /** Where Checkout sends the customer back (PORTAL_URL, or the API's public address). */
  portalUrl: () => string;
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
  /** Charges saved cards of accounts whose balance crossed below their threshold. */
  autoTopUp: AutoTopUp;
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

  return {
    async checkout(request) {
      try {
        const customer = await stripeCustomerFor(stripe, options.database, request.accountId);
        return await createCheckoutSession(stripe, options.portalUrl(), { ...request, customer });
      } catch (error) {
        throw stripeUnavailable(error) ?? error;
      }
    },
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
  };
}

/** Stripe down, slow or refusing for now: the customer may retry (the answer is not kept). */
function stripeUnavailable(error: unknown) {
  const passing =
    error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    error instanceof Stripe.errors.StripeRateLimitError;
  return passing
    ? ipcolaError('not_ready', 'Stripe did not answer; try again', { cause: error })
    : undefined;
}

/** The settings card payments need (STRIPE_*, PORTAL_URL, PUBLIC_HOST). */
export interface CardPaymentSettings {
  readonly stripeSecretKey: string | undefined;
  readonly stripeWebhookSecret: string | undefined;
  readonly stripeApiUrl: string;
  readonly portalUrl: string | undefined;
  readonly publicHost: string;
}

/**
 * Card payments when Stripe is configured, else undefined (checkout then answers
 * billing_disabled). Checkout returns customers to PORTAL_URL, else to this API.
 */
export function cardPaymentsFor(
  settings: CardPaymentSettings,
  parts: Pick<CardPaymentsOptions, 'database' | 'webhooks' | 'logger'> & {
    /** The API's port once it listens. */
    ports: { readonly api: number };
  },
): CardPayments | undefined {
  const { stripeSecretKey, stripeWebhookSecret, publicHost } = settings;
  if (!stripeSecretKey || !stripeWebhookSecret) return undefined;
  const host = isIP(publicHost) === 6 ? `[${publicHost}]` : publicHost;
  return createCardPayments({
    secretKey: stripeSecretKey,
    webhookSecret: stripeWebhookSecret,
    apiUrl: settings.stripeApiUrl,
    portalUrl: () => settings.portalUrl ?? `http://${host}:${parts.ports.api}/`,
    database: parts.database,
    webhooks: parts.webhooks,
    logger: parts.logger,
  });
}
