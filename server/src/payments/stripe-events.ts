/**
 * Stripe's webhook events, applied exactly once: the event id is recorded in the
 * transaction that applies it (stripe_events, migrations/0012), so a redelivery changes
 * nothing and a delivery whose transaction never committed is applied when Stripe sends it
 * again. A top-up is a journal entry referenced by the Checkout Session, so the two events
 * that may report one payment (completed, async_payment_succeeded) credit it once, in
 * either order. A reversed payout transfer gives the operator back what Stripe reversed.
 * A paid session also saves its card for auto top-up, whose charges
 * payment_intent.succeeded credits, once with the charge itself (auto-topup.ts), and
 * payment_intent.payment_failed reports failed, once with the charge's own answer.
 * Refunds and disputes take back what Stripe took back, once, in any order with the
 * payment's own events (stripe-refunds.ts); a paid invoice of a postpaid account's
 * metered usage gives back what it billed (paid-invoices.ts).
 */
import type Stripe from 'stripe';
import { books, formatMoney, microPerStripeUnit, postEntry, transfer } from '../billing/index.ts';
import type { Logger } from '../log/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import type { Webhooks } from '../webhooks/index.ts';
import { AUTO_TOPUP_PURPOSE, creditAutoTopUp, failAutoTopUp } from './auto-topup.ts';
import { savePaymentMethod } from './customers.ts';
import { creditPaidInvoice } from './paid-invoices.ts';
import { applyTransferReversal } from './payout-ledger.ts';
import {
  recordCardPayment,
  recordDispute,
  recordRefund,
  recordRefundFailure,
} from './stripe-refunds.ts';

export interface StripeEventsOptions {
  stripe: Stripe;
  database: Database;
  webhooks: Pick<Webhooks, 'emit'>;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/** What one delivery came to: applied (and recorded) now, seen before, or of no interest. */
export type EventOutcome = 'applied' | 'duplicate' | 'ignored';

/** A change the event makes, run in the transaction that records it. */
type Change = (tx: Queryable) => Promise<void>;

/** How long the receipt may hold up a credit: it is a nicety, the credit is not. */
const RECEIPT_TIMEOUT_MS = 5_000;

export function stripeEventApplier(options: StripeEventsOptions) {
  const { database, logger } = options;

  const seen = async (eventId: string) =>
    (await database.query('SELECT 1 FROM stripe_events WHERE id = $1', [eventId])).length > 0;

  const toppedUp = async (sessionId: string) =>
    (
      await database.query(
        `SELECT 1 FROM journal_entries WHERE kind = 'topup' AND reference = $1`,
        [sessionId],
      )
    ).length > 0;

  /**
   * The session's payment, for its hosted receipt and the card it saved; null when
   * Stripe cannot say now.
   */
  const paymentOf = async (
    session: Stripe.Checkout.Session,
  ): Promise<Stripe.PaymentIntent | null> => {
    const intent = session.payment_intent;
    const intentId = typeof intent === 'string' ? intent : intent?.id;
    if (!intentId) return null;
    try {
      return await options.stripe.paymentIntents.retrieve(
        intentId,
        { expand: ['latest_charge', 'payment_method'] },
        { timeout: RECEIPT_TIMEOUT_MS, maxNetworkRetries: 0 },
      );
    } catch (error) {
      logger.warn(
        { err: error, session: session.id },
        'stripe: reading the receipt failed; crediting without it',
      );
      return null;
    }
  };

  /** The account a session names, if it exists and keeps its balance in the session's currency. */
  const accountFor = async (
    tx: Queryable,
    event: Stripe.Event,
    session: Stripe.Checkout.Session,
  ): Promise<{ id: string; currency: string } | null> => {
    const accountId = session.client_reference_id ?? session.metadata?.account_id ?? null;
    const [account] = accountId
      ? await tx.query<{ currency: string }>('SELECT currency FROM accounts WHERE id = $1', [
          accountId,
        ])
      : [];
    if (!accountId || !account) {
      logger.warn(
        { event: event.id, session: session.id, accountId },
        'stripe: the event names no account of this server; recorded, not credited',
      );
      return null;
    }
    if (session.currency?.toLowerCase() !== account.currency) {
      logger.error(
        { event: event.id, session: session.id, currency: session.currency, accountId },
        `stripe: the session is in another currency than the account's (${account.currency}); recorded, not credited`,
      );
      return null;
    }
    return { id: accountId, currency: account.currency };
  };

  const amountOf = (session: Stripe.Checkout.Session, currency: string) => {
    const micro = (session.amount_total ?? 0) * microPerStripeUnit(currency);
    return { currency, amount_micro: micro, amount: formatMoney(micro) };
  };

  const credit = async (event: Stripe.Event, session: Stripe.Checkout.Session) => {
    const payment = (await toppedUp(session.id)) ? null : await paymentOf(session);
    const charge = payment?.latest_charge;
    const receiptUrl = typeof charge === 'object' && charge ? (charge.receipt_url ?? null) : null;
    return async (tx: Queryable) => {
      const account = await accountFor(tx, event, session);
      if (!account) return;
      if (payment) await savePaymentMethod(tx, account.id, payment);
      const amount = amountOf(session, account.currency);
      if (amount.amount_micro <= 0) return;
      const posted = await postEntry(tx, {
        kind: 'topup',
        reference: session.id,
        currency: account.currency,
        accountId: account.id,
        memo: 'card payment',
        ...(receiptUrl ? { receiptUrl } : {}),
        postings: transfer(books.stripe, books.customer(account.id), amount.amount_micro),
      });
      const intentId =
        typeof session.payment_intent === 'string'
          ? session.payment_intent
          : session.payment_intent?.id;
      if (intentId) {
        await recordCardPayment(tx, {
          paymentIntentId: intentId,
          accountId: account.id,
          currency: account.currency,
          amountMicro: amount.amount_micro,
          topupReference: session.id,
        });
      }
      if (!posted) return;
      await options.webhooks.emit(
        account.id,
        'topup.succeeded',
        { checkout_session_id: session.id, amount, receipt_url: receiptUrl },
        tx,
      );
      logger.info({ event: event.id, session: session.id, accountId: account.id }, 'topped up');
    };
  };

  const failure =
    (event: Stripe.Event, session: Stripe.Checkout.Session) => async (tx: Queryable) => {
      const account = await accountFor(tx, event, session);
      if (!account) return;
      await options.webhooks.emit(
        account.id,
        'topup.failed',
        { checkout_session_id: session.id, amount: amountOf(session, account.currency) },
        tx,
      );
    };

  /**
   * What the event changes: null when nothing (it is still recorded, to be answered the
   * same way if it comes again), undefined for types this server does not handle.
   */
  const changeFor = async (event: Stripe.Event): Promise<Change | null | undefined> => {
    switch (event.type) {
      case 'checkout.session.completed':
        // Bank debits and the like complete unpaid: async_payment_succeeded credits them.
        return event.data.object.payment_status === 'paid'
          ? credit(event, event.data.object)
          : null;
      case 'checkout.session.async_payment_succeeded':
        return credit(event, event.data.object);
      case 'checkout.session.async_payment_failed':
        return failure(event, event.data.object);
      case 'transfer.reversed': {
        const reversed = event.data.object;
        return async (tx) => {
          if (!(await applyTransferReversal(tx, reversed))) {
            logger.warn(
              { event: event.id, transfer: reversed.id },
              'stripe: a reversed transfer of no payout of this server; recorded',
            );
          }
        };
      }
      case 'payment_intent.succeeded': {
        // Checkout's payments are credited by their session: only auto top-ups here.
        const intent = event.data.object;
        if (intent.metadata?.purpose !== AUTO_TOPUP_PURPOSE) return null;
        return async (tx) => {
          await creditAutoTopUp(tx, options.webhooks, intent);
        };
      }
      case 'payment_intent.payment_failed': {
        const intent = event.data.object;
        if (intent.metadata?.purpose !== AUTO_TOPUP_PURPOSE) return null;
        return async (tx) => {
          await failAutoTopUp(tx, options.webhooks, intent);
        };
      }
      case 'charge.refunded': {
        const charge = event.data.object;
        return async (tx) => {
          if (!(await recordRefund(tx, charge))) {
            logger.info(
              { event: event.id, charge: charge.id },
              'stripe: a refund of no payment credited here (yet); kept until it is',
            );
          }
        };
      }
      case 'charge.refund.updated': {
        const refund = event.data.object;
        // Only a failure changes the money: the refund itself is taken by charge.refunded.
        if (refund.status !== 'failed') return null;
        return async (tx) => {
          if (!(await recordRefundFailure(tx, refund))) {
            logger.info(
              { event: event.id, refund: refund.id },
              'stripe: a failed refund of no payment credited here (yet); kept until it is',
            );
          }
        };
      }
      case 'charge.dispute.created':
      case 'charge.dispute.closed': {
        const dispute = event.data.object;
        return async (tx) => {
          if (!(await recordDispute(tx, dispute))) {
            logger.info(
              { event: event.id, dispute: dispute.id },
              'stripe: a dispute of no payment credited here (yet); kept until it is',
            );
          }
        };
      }
      case 'invoice.paid': {
        const invoice = event.data.object;
        return async (tx) => {
          if (!(await creditPaidInvoice(tx, invoice))) {
            logger.warn(
              { event: event.id, invoice: invoice.id },
              'stripe: a paid invoice credited nothing (no account of this server, another currency, or credited before)',
            );
          }
        };
      }
      default:
        return undefined;
    }
  };

  return async function apply(event: Stripe.Event): Promise<EventOutcome> {
    if (await seen(event.id)) return 'duplicate';
    // Stripe is asked (for the receipt) before the transaction, which then holds no lock
    // while the network answers.
    const change = await changeFor(event);
    if (change === undefined) return 'ignored';
    return database.transaction(async (tx) => {
      const recorded = await tx.query(
        'INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id',
        [event.id, event.type],
      );
      // Another delivery of it got here first (and committed, or we would be waiting).
      if (recorded.length === 0) return 'duplicate';
      await change?.(tx);
      return 'applied';
    });
  };
}
