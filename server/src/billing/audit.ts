/**
 * The auditor's check: every balance is a sum the journal gives, every entry balances,
 * every usage row's charge and earning are its bytes at its price, and the usage and
 * earning entries add up to the rows, and every payout's entries add up to what its status
 * says left the operator's book. Read-only; `npm run admin -- audit` prints what it
 * finds and exits non-zero when it finds anything.
 */
import type { Queryable } from '../store/index.ts';

export interface Drift {
  /**
   * What disagrees: `balance`, `payable`, `entry`, `usage_row`, `usage_total`,
   * `earning_total`, `payout`, `payout_entry`.
   */
  check: string;
  /** The account, entry or row it concerns. */
  subject: string;
  expected: number;
  found: number;
}

export async function auditLedger(db: Queryable): Promise<Drift[]> {
  const drifts: Drift[] = [];
  const found = async (check: string, sql: string) => {
    const rows = await db.query<{ subject: string; expected: number; found: number }>(sql);
    for (const row of rows) drifts.push({ check, ...row });
  };

  await found(
    'balance',
    `SELECT a.id AS subject, coalesce(-sum(p.amount_micro), 0)::bigint AS expected,
            a.balance_micro AS found
     FROM accounts a LEFT JOIN journal_postings p ON p.book = 'customer:' || a.id
     GROUP BY a.id, a.balance_micro
     HAVING coalesce(-sum(p.amount_micro), 0) <> a.balance_micro`,
  );
  await found(
    'payable',
    `SELECT a.id AS subject, coalesce(-sum(p.amount_micro), 0)::bigint AS expected,
            a.payable_micro AS found
     FROM accounts a LEFT JOIN journal_postings p ON p.book = 'operator:' || a.id
     GROUP BY a.id, a.payable_micro
     HAVING coalesce(-sum(p.amount_micro), 0) <> a.payable_micro`,
  );
  await found(
    'entry',
    `SELECT entry_id::text AS subject, 0::bigint AS expected, sum(amount_micro)::bigint AS found
     FROM journal_postings GROUP BY entry_id HAVING sum(amount_micro) <> 0`,
  );
  await found(
    'usage_row',
    `SELECT key_id || '/' || node_id || '/' || country || '/' || hour AS subject,
            floor((bytes_up + bytes_down)::numeric * customer_micro_per_gb / 1000000000)::bigint
              AS expected,
            charged_micro AS found
     FROM usage_hourly
     WHERE charged_micro <> floor((bytes_up + bytes_down)::numeric * customer_micro_per_gb
                                  / 1000000000)
        OR earned_micro <> floor((bytes_up + bytes_down)::numeric * operator_micro_per_gb
                                 / 1000000000)`,
  );
  await found(
    'usage_total',
    `WITH rows AS (
       SELECT k.account_id, sum(u.charged_micro) AS charged
       FROM usage_hourly u JOIN api_keys k ON k.id = u.key_id GROUP BY k.account_id
     ), posted AS (
       SELECT e.account_id, sum(p.amount_micro) AS debited
       FROM journal_entries e JOIN journal_postings p
         ON p.entry_id = e.id AND p.book = 'customer:' || e.account_id
       WHERE e.kind = 'usage' GROUP BY e.account_id
     )
     SELECT coalesce(r.account_id, p.account_id) AS subject,
            coalesce(r.charged, 0)::bigint AS expected, coalesce(p.debited, 0)::bigint AS found
     FROM rows r FULL JOIN posted p ON p.account_id = r.account_id
     WHERE coalesce(r.charged, 0) <> coalesce(p.debited, 0)`,
  );
  await found(
    'earning_total',
    `WITH rows AS (
       SELECT n.account_id, sum(u.earned_micro) AS earned
       FROM usage_hourly u JOIN nodes n ON n.id = u.node_id GROUP BY n.account_id
     ), posted AS (
       SELECT e.account_id, -sum(p.amount_micro) AS credited
       FROM journal_entries e JOIN journal_postings p
         ON p.entry_id = e.id AND p.book = 'operator:' || e.account_id
       WHERE e.kind = 'earning' GROUP BY e.account_id
     )
     SELECT coalesce(r.account_id, p.account_id) AS subject,
            coalesce(r.earned, 0)::bigint AS expected, coalesce(p.credited, 0)::bigint AS found
     FROM rows r FULL JOIN posted p ON p.account_id = r.account_id
     WHERE coalesce(r.earned, 0) <> coalesce(p.credited, 0)`,
  );
  // A payout's entries: its `payout` entry and any `payout_reversal` (referenced by the
  // payout id, alone or with a suffix) move what its status says: nothing once failed, the
  // amount less what Stripe reversed otherwise.
  await found(
    'payout',
    `WITH posted AS (
       SELECT e.account_id, split_part(e.reference, ':', 1) AS payout_id,
              sum(p.amount_micro) AS net
       FROM journal_entries e JOIN journal_postings p
         ON p.entry_id = e.id AND p.book = 'operator:' || e.account_id
       WHERE e.kind IN ('payout', 'payout_reversal')
       GROUP BY e.account_id, split_part(e.reference, ':', 1)
     )
     SELECT p.id AS subject,
            (CASE WHEN p.status = 'failed' THEN 0 ELSE p.amount_micro - p.reversed_micro END)::bigint
              AS expected,
            coalesce(posted.net, 0)::bigint AS found
     FROM payouts p LEFT JOIN posted ON posted.payout_id = p.id AND posted.account_id = p.account_id
     WHERE coalesce(posted.net, 0)
           <> CASE WHEN p.status = 'failed' THEN 0 ELSE p.amount_micro - p.reversed_micro END`,
  );
  await found(
    'payout_entry',
    `SELECT e.id::text AS subject, 0::bigint AS expected, 1::bigint AS found
     FROM journal_entries e
     WHERE e.kind IN ('payout', 'payout_reversal')
       AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.id = split_part(e.reference, ':', 1)
                                                AND p.account_id = e.account_id)`,
  );
  return drifts;
}
