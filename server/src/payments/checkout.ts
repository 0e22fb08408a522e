/**
 * Stripe Checkout Sessions for buying credit: one line item of the amount in the
 * account's currency, the account named in client_reference_id and metadata (the webhook
 * credits whoever the session names), and the customer's Idempotency-Key passed on, so
 * a retried request gets the same session from Stripe too.
 */
import { createHash } from 'node:crypto';
import type Stripe from 'stripe';
import { formatMoney, microPerStripeUnit } from '../billing/index.ts';

export interface CheckoutRequest {
  accountId: string;
  currency: string;
  amountMicro: number;
  /** The client's Idempotency-Key, if it sent one. */
  idempotencyKey?: string;
}

/** A checkout for the account's Stripe Customer, who keeps the card for auto top-up. */
export interface CustomerCheckout extends CheckoutRequest {
  customer: string;
}

export interface CheckoutSession {
  id: string;
  url: string;
}

/**
 * The idempotency key Stripe gets: the client's, scoped to its account (Stripe's keys are
 * shared by every customer of this server) and hashed to fit Stripe's 255 characters.
 */
export function stripeIdempotencyKey(accountId: string, key: string): string {
  const digest = createHash('sha256').update(`${accountId}\n${key}`).digest('base64url');
  return `ipcola-checkout-${digest}`;
}

/** `{CHECKOUT_SESSION_ID}` must reach Stripe as written: it fills it in on the way back. */
function returnUrls(portalUrl: string): { success_url: string; cancel_url: string } {
  const join = portalUrl.includes('?') ? '&' : '?';
  return {
    success_url: `${portalUrl}${join}checkout=succeeded&session_id={CHECKOUT_SESSION_ID}`,
    cancel_url: `${portalUrl}${join}checkout=cancelled`,
  };
}

export async function createCheckoutSession(
  stripe: Stripe,
  portalUrl: string,
  request: CustomerCheckout,
): Promise<CheckoutSession> {
  const { accountId, currency, amountMicro } = request;
  const metadata = { account_id: accountId, amount_micro: String(amountMicro) };
  const session = await stripe.checkout.sessions.create(
    {
      mode: 'payment',
      line_items: [
        {
          quantity: 1,
          price_data: {
            currency,
            unit_amount: amountMicro / microPerStripeUnit(currency),
            product_data: { name: `IPCola credit, ${formatMoney(amountMicro)} ${currency}` },
          },
        },
      ],
      client_reference_id: accountId,
      customer: request.customer,
      metadata,
      // Refunds and disputes arrive about the payment, not the session: it names the account
      // too. The card is kept for auto top-up, charged while the customer is away.
      payment_intent_data: { metadata, setup_future_usage: 'off_session' },
      ...returnUrls(portalUrl),
    },
    request.idempotencyKey === undefined
      ? {}
      : { idempotencyKey: stripeIdempotencyKey(accountId, request.idempotencyKey) },
  );
  if (!session.url) throw new Error(`stripe: checkout session ${session.id} has no url`);
  return { id: session.id, url: session.url };
}
