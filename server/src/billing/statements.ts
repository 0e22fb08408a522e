/**
 * An account's statement: the journal entries that moved its balance (as a customer) or
 * what it is owed (as an operator), newest first, each with what it did to that figure.
 */
import type { Queryable } from '../store/index.ts';
import type { EntryKind } from './journal.ts';

export interface StatementLine {
  entryId: number;
  kind: EntryKind;
  /** `balance`: the customer's prepaid credit; `earnings`: what is owed to the operator. */
  book: 'balance' | 'earnings';
  /** What the entry added to that figure (negative: took away), in micro-units. */
  amountMicro: number;
  currency: string;
  memo: string;
  receiptUrl: string | null;
  createdAt: Date;
}

/** Position in a statement: lines are ordered by entry id, then book, newest first. */
export interface StatementPosition {
  entryId: number;
  book: 'balance' | 'earnings';
}

export async function statementLines(
  db: Queryable,
  accountId: string,
  page: { before?: StatementPosition; limit: number },
): Promise<StatementLine[]> {
  const rows = await db.query<{
    id: number;
    kind: EntryKind;
    book: 'balance' | 'earnings';
    amount: number;
    currency: string;
    memo: string;
    receipt_url: string | null;
    created_at: Date;
  }>(
    `SELECT e.id, e.kind, e.currency, e.memo, e.receipt_url, e.created_at, -p.amount_micro AS amount,
            CASE WHEN p.book = 'customer:' || e.account_id THEN 'balance' ELSE 'earnings' END AS book
     FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id
       AND p.book IN ('customer:' || e.account_id, 'operator:' || e.account_id)
     WHERE e.account_id = $1
       AND ($2::bigint IS NULL OR (e.id, CASE WHEN p.book LIKE 'customer:%' THEN 0 ELSE 1 END)
                                  < ($2::bigint, $3::int))
     ORDER BY e.id DESC, CASE WHEN p.book LIKE 'customer:%' THEN 0 ELSE 1 END DESC
     LIMIT $4`,
    [
      accountId,
      page.before?.entryId ?? null,
      page.before ? (page.before.book === 'balance' ? 0 : 1) : null,
      page.limit,
    ],
  );
  return rows.map((row) => ({
    entryId: row.id,
    kind: row.kind,
    book: row.book,
    amountMicro: row.amount,
    currency: row.currency,
    memo: row.memo,
    receiptUrl: row.receipt_url,
    createdAt: row.created_at,
  }));
}
