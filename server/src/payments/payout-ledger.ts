/**
 * Payouts in the database and the journal (migrations/0013): a payout row and its `payout`
 * entry are written together before Stripe is asked, and every later change of status is
 * one transaction with the entry it needs, so the ledger always says what left the
 * operator's book and why.
 */
import type Stripe from 'stripe';
import { books, microPerStripeUnit, postEntry, transfer } from '../billing/index.ts';
import type { Database, Queryable } from '../store/index.ts';

/** A page of a list by creation: after the given position, at most `limit`. */
export interface PayoutListing {
  after?: { createdAt: Date; id: string };
  limit: number;
}

export type PayoutStatus = 'pending' | 'paid' | 'failed' | 'reversed';

export interface Payout {
  id: string;
  accountId: string;
  amountMicro: number;
  currency: string;
  status: PayoutStatus;
  stripeTransferId: string | null;
  /** What Stripe reversed of a paid transfer and the ledger gave back. */
  reversedMicro: number;
  /** Why Stripe refused the transfer. */
  failure: string | null;
  createdAt: Date;
}

interface PayoutRow {
  id: string;
  account_id: string;
  amount_micro: number;
  currency: string;
  status: PayoutStatus;
  stripe_transfer_id: string | null;
  reversed_micro: number;
  failure: string | null;
  created_at: Date;
}

const COLUMNS =
  'id, account_id, amount_micro, currency, status, stripe_transfer_id, reversed_micro, failure, created_at';

const toPayout = (row: PayoutRow): Payout => ({
  id: row.id,
  accountId: row.account_id,
  amountMicro: row.amount_micro,
  currency: row.currency,
  status: row.status,
  stripeTransferId: row.stripe_transfer_id,
  reversedMicro: row.reversed_micro,
  failure: row.failure,
  createdAt: row.created_at,
});

/** Writes the payout, pending, and moves its amount from the operator's book to Stripe's. */
export async function recordPayout(
  tx: Queryable,
  payout: { id: string; accountId: string; amountMicro: number; currency: string },
): Promise<Payout> {
  const [row] = await tx.query<PayoutRow>(
    `INSERT INTO payouts (id, account_id, amount_micro, currency) VALUES ($1, $2, $3, $4)
     RETURNING ${COLUMNS}`,
    [payout.id, payout.accountId, payout.amountMicro, payout.currency],
  );
  if (!row) throw new Error('payouts: the inserted row is missing');
  await postEntry(tx, {
    kind: 'payout',
    reference: payout.id,
    currency: payout.currency,
    accountId: payout.accountId,
    memo: 'payout to the linked Stripe account',
    postings: transfer(books.operator(payout.accountId), books.stripe, payout.amountMicro),
  });
  return toPayout(row);
}

export async function getPayout(db: Queryable, id: string): Promise<Payout | null> {
  const [row] = await db.query<PayoutRow>(`SELECT ${COLUMNS} FROM payouts WHERE id = $1`, [id]);
  return row ? toPayout(row) : null;
}

/** The account's payouts Stripe has not answered for yet, oldest first. */
export async function pendingPayouts(db: Queryable, accountId: string): Promise<Payout[]> {
  const rows = await db.query<PayoutRow>(
    `SELECT ${COLUMNS} FROM payouts WHERE account_id = $1 AND status = 'pending'
     ORDER BY created_at, id`,
    [accountId],
  );
  return rows.map(toPayout);
}

/** Every account's payouts Stripe has not answered for, oldest first, with where they go. */
export async function everyPendingPayout(
  db: Queryable,
  limit: number,
): Promise<Array<{ payout: Payout; destination: string | null }>> {
  const rows = await db.query<PayoutRow & { destination: string | null }>(
    `SELECT ${COLUMNS.split(', ')
      .map((column) => `p.${column}`)
      .join(', ')},
            a.stripe_connect_id AS destination
     FROM payouts p JOIN accounts a ON a.id = p.account_id
     WHERE p.status = 'pending' ORDER BY p.created_at, p.id LIMIT $1`,
    [limit],
  );
  return rows.map((row) => ({ payout: toPayout(row), destination: row.destination }));
}

/** The account's payouts, oldest first, after `after` (a keyset cursor). */
export async function listPayouts(
  db: Queryable,
  accountId: string,
  listing: PayoutListing,
): Promise<Payout[]> {
  const rows = await db.query<PayoutRow>(
    `SELECT ${COLUMNS} FROM payouts WHERE account_id = $1
       AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::text))
     ORDER BY created_at, id LIMIT $4`,
    [accountId, listing.after?.createdAt ?? null, listing.after?.id ?? null, listing.limit],
  );
  return rows.map(toPayout);
}

/** Stripe made the transfer. A payout already reversed by Stripe's event stays so. */
export async function markPaid(db: Queryable, id: string, transferId: string): Promise<void> {
  await db.query(
    `UPDATE payouts SET status = 'paid', stripe_transfer_id = $2, updated_at = now()
     WHERE id = $1 AND status = 'pending'`,
    [id, transferId],
  );
}

/** Stripe refused the transfer: the payout fails and its amount goes back to the operator. */
export async function markFailed(db: Database, id: string, reason: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx.query<PayoutRow>(
      `UPDATE payouts SET status = 'failed', failure = $2, updated_at = now()
       WHERE id = $1 AND status = 'pending' RETURNING ${COLUMNS}`,
      [id, reason.slice(0, 500)],
    );
    if (!row) return;
    await postEntry(tx, {
      kind: 'payout_reversal',
      reference: row.id,
      currency: row.currency,
      accountId: row.account_id,
      memo: 'payout refused by Stripe',
      postings: transfer(books.stripe, books.operator(row.account_id), row.amount_micro),
    });
  });
}

/**
 * Stripe reversed (part of) a transfer: what it reversed so far, less what the ledger
 * gave back already, goes back to the operator. Keyed by the cumulative amount, so a
 * redelivered or older event gives nothing back twice. False when no payout matches.
 */
export async function applyTransferReversal(
  tx: Queryable,
  transferred: Stripe.Transfer,
): Promise<boolean> {
  const [row] = await tx.query<PayoutRow>(
    `SELECT ${COLUMNS} FROM payouts WHERE stripe_transfer_id = $1 OR id = $2 FOR UPDATE`,
    [transferred.id, transferred.metadata?.payout_id ?? null],
  );
  if (!row || row.status === 'failed') return false;
  const unit = microPerStripeUnit(row.currency);
  const reversed = Math.min(row.amount_micro, (transferred.amount_reversed ?? 0) * unit);
  if (reversed <= row.reversed_micro) return true;
  await postEntry(tx, {
    kind: 'payout_reversal',
    reference: `${row.id}:${reversed}`,
    currency: row.currency,
    accountId: row.account_id,
    memo: 'transfer reversed by Stripe',
    postings: transfer(books.stripe, books.operator(row.account_id), reversed - row.reversed_micro),
  });
  await tx.query(
    `UPDATE payouts SET status = 'reversed', reversed_micro = $2,
            stripe_transfer_id = coalesce(stripe_transfer_id, $3), updated_at = now()
     WHERE id = $1`,
    [row.id, reversed, transferred.id],
  );
  return true;
}
