/**
 * Paying operators through Stripe Connect: a connected (Express) account per operator,
 * linked through Stripe's onboarding page, and payouts as Stripe transfers to it.
 *
 * A payout is booked (row and `payout` entry, one transaction) before Stripe is asked,
 * and its id is the transfer's idempotency key and transfer group. Stripe's answer then
 * marks it paid, or, when Stripe refused, failed with a `payout_reversal` entry. When
 * Stripe's answer is unknown (no answer, a 5xx, a server killed while waiting) the payout
 * stays pending and is settled later, by the account's next payout request or by the
 * sweep every server runs at start-up and every few minutes: Stripe is first asked for a
 * transfer in the payout's group (which outlives its 24-hour idempotency keys) and only
 * when there is none is the transfer made, under the same key. The transfer is made at
 * most once and the ledger never shows money paid that was not, nor loses money that was.
 */
import type Stripe from 'stripe';
import {
  earningsHeldBack,
  formatMoney,
  MICRO_PER_UNIT,
  microPerStripeUnit,
  stripeAmountStep,
} from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import {
  everyPendingPayout,
  getPayout,
  listPayouts,
  markFailed,
  markPaid,
  type Payout,
  type PayoutListing,
  pendingPayouts,
  recordPayout,
} from './payout-ledger.ts';
import { stripeRefused, stripeUnavailable } from './stripe-errors.ts';

export interface PayoutsOptions {
  stripe: Stripe;
  database: Database;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** PAYOUT_HOLD_DAYS: earnings of usage hours newer than this are not payable yet. */
  holdDays: number;
  /** PAYOUT_MINIMUM, in micro-units. */
  minimumMicro: number;
  /** Where Stripe's onboarding sends the operator back (the portal). */
  portalUrl: () => string;
  now?: () => number;
}

/** What an operator is owed, what of it is held back, and what may be paid out now. */
export interface PayoutBalance {
  currency: string;
  owedMicro: number;
  heldMicro: number;
  availableMicro: number;
  minimumMicro: number;
  holdDays: number;
}

export interface PayoutAccount {
  /** The connected account, acct_...; null until the operator asks to link one. */
  stripeAccountId: string | null;
  detailsSubmitted: boolean;
  payoutsEnabled: boolean;
  balance: PayoutBalance;
}

export interface Onboarding {
  stripeAccountId: string;
  /** Stripe's onboarding page: send the operator there. */
  url: string;
  expiresAt: Date;
}

export interface Payouts {
  /** The account's connected account (made on the first call) and a fresh onboarding link. */
  link(accountId: string): Promise<Onboarding>;
  account(accountId: string): Promise<PayoutAccount>;
  /** Pays `amountMicro`, or everything available; refuses below the minimum or above what is available. */
  request(accountId: string, amountMicro?: number): Promise<Payout>;
  list(accountId: string, listing: PayoutListing): Promise<Payout[]>;
  /** Settles every account's pending payouts (oldest first); how many are still pending. */
  settlePending(): Promise<number>;
}

const DAY_MS = 86_400_000;
/** Pending payouts are rare (Stripe unanswered): a sweep settles at most this many. */
const SWEEP_BATCH = 100;

export function newPayoutId(): string {
  return `payout_${crypto.randomUUID().replaceAll('-', '')}`;
}

/** `?payouts=…` on the portal URL, as Checkout's return URLs are made. */
function onboardingUrls(portalUrl: string): { refresh_url: string; return_url: string } {
  const join = portalUrl.includes('?') ? '&' : '?';
  return {
    refresh_url: `${portalUrl}${join}payouts=refresh`,
    return_url: `${portalUrl}${join}payouts=linked`,
  };
}

export function createPayouts(options: PayoutsOptions): Payouts {
  const { stripe, database, logger } = options;
  const now = options.now ?? Date.now;

  const operator = async (db: Queryable, accountId: string, lock = false) => {
    const [row] = await db.query<{
      currency: string;
      payable_micro: number;
      stripe_connect_id: string | null;
    }>(
      `SELECT currency, payable_micro, stripe_connect_id FROM accounts WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
      [accountId],
    );
    if (!row) throw ipcolaError('not_found', 'No such account');
    return row;
  };

  const balanceOf = async (db: Queryable, accountId: string, lock = false) => {
    const row = await operator(db, accountId, lock);
    const since = new Date(now() - options.holdDays * DAY_MS);
    const held = Math.min(row.payable_micro, await earningsHeldBack(db, accountId, since));
    const step = stripeAmountStep(row.currency);
    // Stripe moves whole cents (or units): the rest waits for the next payout.
    const available = Math.max(0, Math.floor((row.payable_micro - held) / step) * step);
    const balance: PayoutBalance = {
      currency: row.currency,
      owedMicro: row.payable_micro,
      heldMicro: Math.max(0, held),
      availableMicro: available,
      minimumMicro: options.minimumMicro,
      holdDays: options.holdDays,
    };
    return { balance, destination: row.stripe_connect_id };
  };

  /** Asks Stripe for the payout's transfer (again, for a pending one) and records the answer. */
  const send = async (payout: Payout, destination: string): Promise<Payout> => {
    try {
      const made = await stripe.transfers.create(
        {
          amount: payout.amountMicro / microPerStripeUnit(payout.currency),
          currency: payout.currency,
          destination,
          transfer_group: payout.id,
          description: `IPCola payout ${payout.id}`,
          metadata: { payout_id: payout.id, account_id: payout.accountId },
        },
        { idempotencyKey: payout.id },
      );
      await markPaid(database, payout.id, made.id);
      logger.info({ payout: payout.id, transfer: made.id }, 'payout paid');
    } catch (error) {
      if (!stripeRefused(error)) {
        logger.warn({ err: error, payout: payout.id }, 'payout: Stripe did not answer; pending');
        return (await getPayout(database, payout.id)) ?? payout;
      }
      await markFailed(database, payout.id, error.message);
      logger.warn({ err: error, payout: payout.id }, 'payout refused by Stripe; reversed');
    }
    return (await getPayout(database, payout.id)) ?? payout;
  };

  /**
   * Settles a payout left pending: paid with the transfer Stripe made for it if there is
   * one, else sent again.
   */
  const settle = async (payout: Payout, destination: string | null): Promise<Payout> => {
    try {
      const made = await stripe.transfers.list({ transfer_group: payout.id, limit: 1 });
      const transfer = made.data[0];
      if (transfer) {
        await markPaid(database, payout.id, transfer.id);
        logger.info({ payout: payout.id, transfer: transfer.id }, 'payout paid (found at Stripe)');
        return (await getPayout(database, payout.id)) ?? payout;
      }
    } catch (error) {
      logger.warn({ err: error, payout: payout.id }, 'payout: Stripe did not answer; pending');
      return payout;
    }
    if (!destination) return payout;
    return send(payout, destination);
  };

  const stripeCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      throw stripeUnavailable(error) ?? error;
    }
  };

  return {
    async link(accountId) {
      let { stripe_connect_id: connected } = await operator(database, accountId);
      if (!connected) {
        const created = await stripeCall(() =>
          stripe.accounts.create(
            {
              type: 'express',
              capabilities: { transfers: { requested: true } },
              metadata: { account_id: accountId },
            },
            // Two requests at once make one connected account.
            { idempotencyKey: `ipcola-connect-${accountId}` },
          ),
        );
        await database.query(
          `UPDATE accounts SET stripe_connect_id = $2 WHERE id = $1 AND stripe_connect_id IS NULL`,
          [accountId, created.id],
        );
        connected = (await operator(database, accountId)).stripe_connect_id ?? created.id;
      }
      const account = connected;
      const link = await stripeCall(() =>
        stripe.accountLinks.create({
          account,
          type: 'account_onboarding',
          ...onboardingUrls(options.portalUrl()),
        }),
      );
      return {
        stripeAccountId: account,
        url: link.url,
        expiresAt: new Date(link.expires_at * 1000),
      };
    },

    async account(accountId) {
      const { balance, destination } = await balanceOf(database, accountId);
      if (!destination) {
        return { stripeAccountId: null, detailsSubmitted: false, payoutsEnabled: false, balance };
      }
      const account = await stripeCall(() => stripe.accounts.retrieve(destination));
      return {
        stripeAccountId: destination,
        detailsSubmitted: account.details_submitted === true,
        payoutsEnabled: account.payouts_enabled === true,
        balance,
      };
    },

    async request(accountId, amountMicro) {
      const { stripe_connect_id: destination } = await operator(database, accountId);
      if (!destination) throw ipcolaError('payout_account_missing');
      // Payouts Stripe never answered for are settled first: what is available depends on them.
      for (const pending of await pendingPayouts(database, accountId)) {
        const settled = await settle(pending, destination);
        if (settled.status === 'pending') {
          throw ipcolaError('not_ready', 'Stripe did not answer for an earlier payout; try again');
        }
      }
      const payout = await database.transaction(async (tx) => {
        // The account's row is locked: two payout requests never both spend one balance.
        const { balance } = await balanceOf(tx, accountId, true);
        const step = stripeAmountStep(balance.currency);
        const amount = amountMicro ?? balance.availableMicro;
        const show = (micro: number) => `${formatMoney(micro)} ${balance.currency}`;
        if (amount % step !== 0) {
          throw ipcolaError(
            'invalid_request',
            step === MICRO_PER_UNIT
              ? 'amount must be whole units of the currency'
              : 'amount must be whole cents (at most two decimals)',
          );
        }
        if (amount > balance.availableMicro) {
          throw ipcolaError(
            'payout_exceeds_available',
            `${show(amount)} is more than the ${show(balance.availableMicro)} available (${show(balance.heldMicro)} is held back for ${balance.holdDays} days)`,
          );
        }
        if (amount <= 0 || amount < balance.minimumMicro) {
          throw ipcolaError(
            'payout_below_minimum',
            `${show(amount)} is less than the minimum payout of ${show(balance.minimumMicro)} (${show(balance.availableMicro)} available, ${show(balance.heldMicro)} held back)`,
          );
        }
        return recordPayout(tx, {
          id: newPayoutId(),
          accountId,
          amountMicro: amount,
          currency: balance.currency,
        });
      });
      return send(payout, destination);
    },

    list: (accountId, listing) => listPayouts(database, accountId, listing),

    async settlePending() {
      let left = 0;
      for (const { payout, destination } of await everyPendingPayout(database, SWEEP_BATCH)) {
        if ((await settle(payout, destination)).status === 'pending') left += 1;
      }
      return left;
    },
  };
}
