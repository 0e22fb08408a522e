/**
 * Refunds and disputes of card top-ups. Stripe reports them about a charge of a
 * PaymentIntent, in any order and possibly before the payment's own event, so the webhook
 * keeps what Stripe says as facts (migrations/0015) and settle() brings the ledger in line
 * with them once the payment is credited here: refunds by the difference between the
 * charge's cumulative amount_refunded and what its refund entries already took back, a
 * dispute once when opened and once more if won, and a refund that failed (its money
 * came back to Stripe) given back once. Every call is safe to repeat.
 *
 * Both take the money back out of the customer's balance into the `stripe` book (money
 * held at Stripe leaves: to the card, or withdrawn by Stripe for the dispute), even when
 * the credit was already spent: the balance then goes below zero and the gateway refuses
 * the account with quota_exhausted until it is paid up.
 */
import type Stripe from 'stripe';
import { books, microPerStripeUnit, postEntry, transfer } from '../billing/index.ts';
import type { Queryable } from '../store/index.ts';

export interface CardPayment {
  paymentIntentId: string;
  accountId: string;
  currency: string;
  amountMicro: number;
  /** The reference of its `topup` entry. */
  topupReference: string;
}

const idOf = (value: string | { id: string } | null | undefined): string | null =>
  typeof value === 'string' ? value : (value?.id ?? null);

/**
 * Keeps which account a credited payment was for (call it with the payment's `topup`
 * entry) and takes back what Stripe already reported refunded or disputed.
 */
export async function recordCardPayment(tx: Queryable, payment: CardPayment): Promise<void> {
  await tx.query(
    `INSERT INTO stripe_payments (payment_intent_id, account_id, currency, amount_micro, topup_reference)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_intent_id) DO NOTHING`,
    [
      payment.paymentIntentId,
      payment.accountId,
      payment.currency,
      payment.amountMicro,
      payment.topupReference,
    ],
  );
  await settle(tx, payment.paymentIntentId);
}

/**
 * Keeps the charge's cumulative refund (the highest reported: a late, older event changes
 * nothing) and settles its payment; false when that payment is not credited here (yet).
 */
export async function recordRefund(tx: Queryable, charge: Stripe.Charge): Promise<boolean> {
  const intentId = idOf(charge.payment_intent);
  if (!intentId) return false;
  await tx.query(
    `INSERT INTO stripe_charge_refunds (charge_id, payment_intent_id, amount_refunded)
     VALUES ($1, $2, $3)
     ON CONFLICT (charge_id) DO UPDATE
       SET amount_refunded = greatest(stripe_charge_refunds.amount_refunded, excluded.amount_refunded)`,
    [charge.id, intentId, charge.amount_refunded],
  );
  return settle(tx, intentId);
}

/**
 * Keeps the dispute and how it ended (a closed dispute stays closed, whatever older event
 * comes after) and settles its payment; false when that payment is not credited here (yet).
 */
export async function recordDispute(tx: Queryable, dispute: Stripe.Dispute): Promise<boolean> {
  const intentId = idOf(dispute.payment_intent);
  if (!intentId) return false;
  const status = dispute.status === 'won' || dispute.status === 'lost' ? dispute.status : 'open';
  await tx.query(
    `INSERT INTO stripe_disputes (id, payment_intent_id, amount, status) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET status = CASE WHEN stripe_disputes.status = 'open'
       THEN excluded.status ELSE stripe_disputes.status END`,
    [dispute.id, intentId, dispute.amount, status],
  );
  return settle(tx, intentId);
}

/**
 * Keeps a refund that failed (charge.refund.updated with status failed) and
 * settles its payment; false when that payment is not credited here (yet).
 */
export async function recordRefundFailure(tx: Queryable, refund: Stripe.Refund): Promise<boolean> {
  const intentId = idOf(refund.payment_intent);
  const chargeId = idOf(refund.charge);
  if (!intentId || !chargeId || refund.amount <= 0) return false;
  await tx.query(
    `INSERT INTO stripe_refund_failures (refund_id, charge_id, payment_intent_id, amount)
     VALUES ($1, $2, $3, $4) ON CONFLICT (refund_id) DO NOTHING`,
    [refund.id, chargeId, intentId, refund.amount],
  );
  return settle(tx, intentId);
}

/** Posts what the facts about the payment say and the ledger does not yet. */
async function settle(tx: Queryable, paymentIntentId: string): Promise<boolean> {
  const [payment] = await tx.query<{ account_id: string; currency: string }>(
    'SELECT account_id, currency FROM stripe_payments WHERE payment_intent_id = $1',
    [paymentIntentId],
  );
  if (!payment) return false;
  const { account_id: accountId, currency } = payment;
  const unit = microPerStripeUnit(currency);
  const customer = books.customer(accountId);
  // Locked: two refund events of one charge at once must not both post the same difference.
  const charges = await tx.query<{ charge_id: string; amount_refunded: number }>(
    `SELECT charge_id, amount_refunded FROM stripe_charge_refunds
     WHERE payment_intent_id = $1 ORDER BY charge_id FOR UPDATE`,
    [paymentIntentId],
  );
  for (const charge of charges) {
    const [taken] = await tx.query<{ micro: number }>(
      `SELECT coalesce(sum(p.amount_micro), 0)::bigint AS micro
       FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id AND p.book = $2
       WHERE e.kind = 'refund' AND split_part(e.reference, ':', 1) = $1`,
      [charge.charge_id, customer],
    );
    const due = charge.amount_refunded * unit - (taken?.micro ?? 0);
    if (due <= 0) continue;
    await postEntry(tx, {
      kind: 'refund',
      reference: `${charge.charge_id}:${charge.amount_refunded}`,
      currency,
      accountId,
      memo: 'card refund',
      postings: transfer(customer, books.stripe, due),
    });
  }
  const failures = await tx.query<{ refund_id: string; amount: number }>(
    'SELECT refund_id, amount FROM stripe_refund_failures WHERE payment_intent_id = $1 ORDER BY refund_id',
    [paymentIntentId],
  );
  for (const failure of failures) {
    await postEntry(tx, {
      kind: 'refund',
      reference: `${failure.refund_id}:failed`,
      currency,
      accountId,
      memo: 'card refund failed: back to the balance',
      postings: transfer(books.stripe, customer, failure.amount * unit),
    });
  }
  const disputes = await tx.query<{ id: string; amount: number; status: string }>(
    'SELECT id, amount, status FROM stripe_disputes WHERE payment_intent_id = $1 ORDER BY id',
    [paymentIntentId],
  );
  for (const dispute of disputes) {
    const micro = dispute.amount * unit;
    await postEntry(tx, {
      kind: 'dispute',
      reference: dispute.id,
      currency,
      accountId,
      memo: 'card dispute',
      postings: transfer(customer, books.stripe, micro),
    });
    if (dispute.status !== 'won') continue;
    await postEntry(tx, {
      kind: 'dispute',
      reference: `${dispute.id}:won`,
      currency,
      accountId,
      memo: 'dispute won',
      postings: transfer(books.stripe, customer, micro),
    });
  }
  return true;
}
