/**
 * One Stripe Customer per account, created on its first checkout and kept in
 * accounts.stripe_customer_id: the card a customer pays with is saved to it, for auto
 * top-up. Two first checkouts at once create one customer (the idempotency key is the
 * account's) and keep the same id.
 */
import type Stripe from 'stripe';
import type { Queryable } from '../store/index.ts';

export async function stripeCustomerFor(
  stripe: Stripe,
  db: Queryable,
  accountId: string,
): Promise<string> {
  const [known] = await db.query<{ stripe_customer_id: string | null }>(
    'SELECT stripe_customer_id FROM accounts WHERE id = $1',
    [accountId],
  );
  if (known?.stripe_customer_id) return known.stripe_customer_id;
  const customer = await stripe.customers.create(
    { metadata: { account_id: accountId } },
    { idempotencyKey: `ipcola-customer-${accountId}` },
  );
  const [kept] = await db.query<{ stripe_customer_id: string }>(
    `UPDATE accounts SET stripe_customer_id = coalesce(stripe_customer_id, $2) WHERE id = $1
     RETURNING stripe_customer_id`,
    [accountId, customer.id],
  );
  return kept?.stripe_customer_id ?? customer.id;
}

/** Keeps the card a paid Checkout saved for off-session use as the account's for auto top-up. */
export async function savePaymentMethod(
  tx: Queryable,
  accountId: string,
  intent: Stripe.PaymentIntent,
): Promise<void> {
  const method = intent.payment_method;
  const customer = typeof intent.customer === 'string' ? intent.customer : intent.customer?.id;
  if (intent.setup_future_usage !== 'off_session' || !method || !customer) return;
  const id = typeof method === 'string' ? method : method.id;
  const card = typeof method === 'string' ? null : method.card;
  await tx.query(
    `UPDATE accounts SET payment_method_id = $2, payment_method_brand = $3,
       payment_method_last4 = $4, stripe_customer_id = coalesce(stripe_customer_id, $5)
     WHERE id = $1`,
    [accountId, id, card?.brand ?? null, card?.last4 ?? null, customer],
  );
}
