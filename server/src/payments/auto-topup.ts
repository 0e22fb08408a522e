/**
 * Auto top-up: when a usage batch leaves a balance below the account's threshold, the
 * saved card is charged off-session, once per crossing. The server that disarms the
 * account (a conditional UPDATE) charges; the idempotency key names the account and the
 * crossing's number, so a retried request is the same charge at Stripe. The charge is
 * credited as a `topup` entry referenced by the PaymentIntent, so its
 * payment_intent.succeeded event (stripe-events.ts) credits nothing more, in either order.
 * A failure is kept on the account and sent as topup.failed, once per PaymentIntent
 * whether Stripe's answer or its payment_intent.payment_failed event (a charge that was
 * still processing) tells of it first; it is tried again at the next crossing or when the
 * settings are saved.
 */
import Stripe from 'stripe';
import { books, microPerStripeUnit, moneyData, postEntry, transfer } from '../billing/index.ts';
import type { Logger } from '../log/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import type { Webhooks } from '../webhooks/index.ts';
import { recordCardPayment } from './stripe-refunds.ts';

export interface AutoTopUpOptions {
  stripe: Stripe;
  database: Database;
  webhooks: Pick<Webhooks, 'emit'>;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface AutoTopUp {
  /** Charges the accounts among these whose balance crossed below their threshold. */
  check(accountIds: readonly string[]): Promise<void>;
}

interface Due {
  id: string;
  currency: string;
  auto_topup_amount_micro: number;
  auto_topup_crossings: number;
  stripe_customer_id: string;
  payment_method_id: string;
}

export const AUTO_TOPUP_PURPOSE = 'auto_topup';

export function autoTopUpCharger(options: AutoTopUpOptions): AutoTopUp {
  const { stripe, database, webhooks, logger } = options;

  const fail = async (due: Due, message: string, intentId: string | null) => {
    await database.transaction((tx) =>
      recordAutoTopUpFailure(tx, webhooks, {
        accountId: due.id,
        currency: due.currency,
        amountMicro: due.auto_topup_amount_micro,
        intentId,
        message,
      }),
    );
    logger.warn({ accountId: due.id, intentId, message }, 'auto top-up failed');
  };

  const charge = async (due: Due) => {
    let intent: Stripe.PaymentIntent;
    try {
      intent = await stripe.paymentIntents.create(
        {
          amount: due.auto_topup_amount_micro / microPerStripeUnit(due.currency),
          currency: due.currency,
          customer: due.stripe_customer_id,
          payment_method: due.payment_method_id,
          off_session: true,
          confirm: true,
          metadata: { account_id: due.id, purpose: AUTO_TOPUP_PURPOSE },
          expand: ['latest_charge'],
        },
        { idempotencyKey: `autotopup-${due.id}-${due.auto_topup_crossings}` },
      );
    } catch (error) {
      const intentId = error instanceof Stripe.errors.StripeError ? error.payment_intent?.id : null;
      // Stripe's own words (the library adds its request id to error.message).
      const message =
        error instanceof Stripe.errors.StripeError
          ? ((error.raw as { message?: string }).message ?? error.message)
          : String(error);
      return fail(due, message, intentId ?? null);
    }
    if (intent.status === 'succeeded') {
      await database.transaction((tx) => creditAutoTopUp(tx, webhooks, intent));
      logger.info({ accountId: due.id, intentId: intent.id }, 'auto top-up charged');
    } else if (intent.status !== 'processing') {
      // A card that asks for its holder (3-D Secure) cannot be charged off-session.
      await fail(due, `The payment needs the card holder (${intent.status})`, intent.id);
    }
  };

  return {
    async check(accountIds) {
      const due = await database.query<Due>(
        `UPDATE accounts SET auto_topup_armed = false,
           auto_topup_crossings = auto_topup_crossings + 1
         WHERE id = ANY($1::text[]) AND auto_topup_armed AND auto_topup_enabled
           AND payment_method_id IS NOT NULL AND stripe_customer_id IS NOT NULL
           AND balance_micro < auto_topup_threshold_micro
         RETURNING id, currency, auto_topup_amount_micro, auto_topup_crossings,
                   stripe_customer_id, payment_method_id`,
        [accountIds],
      );
      for (const account of due) await charge(account);
    },
  };
}

/**
 * Credits a succeeded auto top-up once (its PaymentIntent is the entry's reference) and
 * sends topup.succeeded; false when it was credited before or names no account here.
 */
export async function creditAutoTopUp(
  tx: Queryable,
  webhooks: Pick<Webhooks, 'emit'>,
  intent: Stripe.PaymentIntent,
): Promise<boolean> {
  const account = await accountOfIntent(tx, intent);
  if (!account) return false;
  const { id: accountId } = account;
  const micro = (intent.amount_received || intent.amount) * microPerStripeUnit(account.currency);
  const charge = intent.latest_charge;
  const receiptUrl = typeof charge === 'object' && charge ? (charge.receipt_url ?? null) : null;
  const posted = await postEntry(tx, {
    kind: 'topup',
    reference: intent.id,
    currency: account.currency,
    accountId,
    memo: 'auto top-up',
    ...(receiptUrl ? { receiptUrl } : {}),
    postings: transfer(books.stripe, books.customer(accountId), micro),
  });
  await recordCardPayment(tx, {
    paymentIntentId: intent.id,
    accountId,
    currency: account.currency,
    amountMicro: micro,
    topupReference: intent.id,
  });
  if (!posted) return false;
  await tx.query(
    'UPDATE accounts SET auto_topup_failed_at = NULL, auto_topup_failure = NULL WHERE id = $1',
    [accountId],
  );
  await webhooks.emit(
    accountId,
    'topup.succeeded',
    {
      payment_intent_id: intent.id,
      amount: moneyData(account.currency, micro),
      receipt_url: receiptUrl,
    },
    tx,
  );
  return true;
}

export interface AutoTopUpFailure {
  accountId: string;
  currency: string;
  amountMicro: number;
  /** The failed PaymentIntent; null when Stripe's answer never came. */
  intentId: string | null;
  /** Stripe's own words. */
  message: string;
}

/**
 * Shows the failure on the account and sends topup.failed, once per PaymentIntent; false
 * when this PaymentIntent's failure was recorded before.
 */
export async function recordAutoTopUpFailure(
  tx: Queryable,
  webhooks: Pick<Webhooks, 'emit'>,
  failure: AutoTopUpFailure,
): Promise<boolean> {
  const message = failure.message.slice(0, 500);
  if (failure.intentId !== null) {
    const first = await tx.query(
      `INSERT INTO auto_topup_failures (payment_intent_id, account_id, message)
       VALUES ($1, $2, $3) ON CONFLICT (payment_intent_id) DO NOTHING RETURNING 1`,
      [failure.intentId, failure.accountId, message],
    );
    if (first.length === 0) return false;
  }
  await tx.query(
    `UPDATE accounts SET auto_topup_failed_at = now(), auto_topup_failure = $2 WHERE id = $1`,
    [failure.accountId, message],
  );
  await webhooks.emit(
    failure.accountId,
    'topup.failed',
    {
      payment_intent_id: failure.intentId,
      amount: moneyData(failure.currency, failure.amountMicro),
      message,
    },
    tx,
  );
  return true;
}

/**
 * payment_intent.payment_failed of an auto top-up: the charge Stripe had not settled when
 * it answered (or a decline it reports again) failed. False when it names no account here
 * or was recorded before.
 */
export async function failAutoTopUp(
  tx: Queryable,
  webhooks: Pick<Webhooks, 'emit'>,
  intent: Stripe.PaymentIntent,
): Promise<boolean> {
  const account = await accountOfIntent(tx, intent);
  if (!account) return false;
  const { id: accountId } = account;
  return recordAutoTopUpFailure(tx, webhooks, {
    accountId,
    currency: account.currency,
    amountMicro: intent.amount * microPerStripeUnit(account.currency),
    intentId: intent.id,
    message: intent.last_payment_error?.message ?? `The payment failed (${intent.status})`,
  });
}

/** The account an auto top-up's PaymentIntent names, if it is here and in the intent's currency. */
async function accountOfIntent(
  tx: Queryable,
  intent: Stripe.PaymentIntent,
): Promise<{ id: string; currency: string } | null> {
  const accountId = intent.metadata?.account_id;
  if (!accountId) return null;
  const [account] = await tx.query<{ currency: string }>(
    'SELECT currency FROM accounts WHERE id = $1',
    [accountId],
  );
  if (!account || account.currency !== intent.currency?.toLowerCase()) return null;
  return { id: accountId, currency: account.currency };
}
