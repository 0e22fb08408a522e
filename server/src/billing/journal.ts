/**
 * The double-entry journal (migrations/0010_money.sql): every movement of money is one
 * entry with a cause and postings that sum to zero, appended, never edited. Posting an
 * entry also moves the cached balances of the books that belong to accounts, in the same
 * transaction, so a balance is always the sum an audit recomputes.
 */
import type { Queryable } from '../store/index.ts';

export type EntryKind =
  | 'opening'
  | 'trial'
  | 'topup'
  | 'usage'
  | 'refund'
  | 'dispute'
  | 'adjustment'
  | 'earning'
  | 'payout'
  | 'payout_reversal';

/** The books money moves between. Amounts: positive debits, negative credits. */
export const books = {
  /** Prepaid credit owed to a customer: its balance is minus the book's sum. */
  customer: (accountId: string) => `customer:${accountId}`,
  /** Earnings owed to an operator for its nodes' traffic. */
  operator: (accountId: string) => `operator:${accountId}`,
  revenue: 'revenue',
  operatorCost: 'operator_cost',
  /** Trial credit and goodwill adjustments: what the business gives away. */
  promotions: 'promotions',
  /** Money held at Stripe: paid in by customers, paid out to operators. */
  stripe: 'stripe',
  refunds: 'refunds',
  disputes: 'disputes',
} as const;

export interface Posting {
  book: string;
  amountMicro: number;
}

export interface Entry {
  kind: EntryKind;
  /** The cause; an entry of the same kind and reference is never posted twice. */
  reference: string;
  currency: string;
  /** The customer or operator whose statement shows it. */
  accountId: string;
  postings: readonly Posting[];
  memo?: string;
  receiptUrl?: string;
}

/** Money moving from one book to another: the usual two-line entry. */
export function transfer(from: string, to: string, amountMicro: number): Posting[] {
  return [
    { book: from, amountMicro },
    { book: to, amountMicro: -amountMicro },
  ];
}

/**
 * Appends the entry and moves the cached balances; false when its cause was posted before
 * (nothing is written then). Call inside the transaction that makes the movement happen.
 */
export async function postEntry(tx: Queryable, entry: Entry): Promise<boolean> {
  const postings = entry.postings.filter((posting) => posting.amountMicro !== 0);
  let sum = 0;
  for (const posting of postings) {
    if (!Number.isSafeInteger(posting.amountMicro)) {
      throw new RangeError(`journal: ${posting.amountMicro} is not a whole number of micro-units`);
    }
    sum += posting.amountMicro;
  }
  if (sum !== 0) throw new RangeError(`journal: a ${entry.kind} entry does not balance (${sum})`);
  if (new Set(postings.map((posting) => posting.book)).size !== postings.length) {
    throw new RangeError('journal: one posting per book and entry');
  }
  const [created] = await tx.query<{ id: number }>(
    `INSERT INTO journal_entries (kind, reference, currency, account_id, memo, receipt_url)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (kind, reference) DO NOTHING RETURNING id`,
    [
      entry.kind,
      entry.reference,
      entry.currency,
      entry.accountId,
      entry.memo ?? '',
      entry.receiptUrl ?? null,
    ],
  );
  if (!created) return false;
  if (postings.length === 0) return true;
  await tx.query(
    `INSERT INTO journal_postings (entry_id, book, amount_micro)
     SELECT $1, book, amount FROM unnest($2::text[], $3::bigint[]) AS p (book, amount)`,
    [created.id, postings.map((p) => p.book), postings.map((p) => p.amountMicro)],
  );
  await moveCachedBalances(tx, postings);
  return true;
}

/**
 * A balance back at or above an alert's level (or the auto top-up threshold) arms it for
 * the next crossing, in the UPDATE that moves it (migrations/0014), so that no watcher
 * reading the balance later can miss or double a crossing.
 */
const REARM = `,
  balance_low_armed = balance_low_armed OR balance_micro - $2 >= low_balance_micro,
  balance_exhausted_armed = balance_exhausted_armed OR balance_micro - $2 > 0,
  auto_topup_armed = auto_topup_armed OR balance_micro - $2 >= auto_topup_threshold_micro`;

/** accounts.balance_micro and payable_micro follow their books: minus the postings (credits raise them). */
async function moveCachedBalances(tx: Queryable, postings: readonly Posting[]): Promise<void> {
  // In one order everywhere: two entries moving the same two accounts never deadlock.
  const ordered = [...postings].sort((a, b) => (a.book < b.book ? -1 : 1));
  for (const posting of ordered) {
    const [kind, accountId] = posting.book.split(':');
    if (!accountId) continue;
    const column =
      kind === 'customer' ? 'balance_micro' : kind === 'operator' ? 'payable_micro' : null;
    if (!column) continue;
    await tx.query(
      `UPDATE accounts SET ${column} = ${column} - $2${column === 'balance_micro' ? REARM : ''} WHERE id = $1`,
      [accountId, posting.amountMicro],
    );
  }
}
