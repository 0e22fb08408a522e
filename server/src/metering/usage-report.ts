/**
 * Reads flushed usage back for an account: rows per period and key, in keyset pages, and
 * the totals of the whole range. Periods are UTC hours or days.
 */
import type { Queryable } from '../store/index.ts';

export type Granularity = 'hour' | 'day';

export interface UsageQuery {
  accountId: string;
  /** Inclusive; rounded down to the period by the caller. */
  from: Date;
  /** Exclusive. */
  to: Date;
  granularity: Granularity;
  keyId?: string;
  /** Exit country, lowercase. */
  country?: string;
  /** Rows after this (period, key), for the next page. */
  after?: { periodStart: Date; keyId: string };
  limit?: number;
}

export interface UsageRow {
  periodStart: Date;
  keyId: string;
  keyName: string;
  bytesUp: number;
  bytesDown: number;
  requests: number;
}

export interface UsageTotals {
  bytesUp: number;
  bytesDown: number;
  requests: number;
}

interface RowRecord {
  period_start: Date;
  key_id: string;
  key_name: string;
  bytes_up: number;
  bytes_down: number;
  requests: number;
}

const FILTER = `
  FROM usage_hourly u JOIN api_keys k ON k.id = u.key_id
  WHERE k.account_id = $1 AND u.hour >= $2 AND u.hour < $3
    AND ($4::text IS NULL OR u.key_id = $4::text)
    AND ($5::text IS NULL OR u.country = $5::text)`;

/** Rows ordered by period then key; all of them when no limit is given. */
export async function readUsage(db: Queryable, query: UsageQuery): Promise<UsageRow[]> {
  const period = query.granularity === 'day' ? 'day' : 'hour';
  const rows = await db.query<RowRecord>(
    `SELECT * FROM (
       SELECT date_trunc('${period}', u.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start,
              u.key_id, k.name AS key_name,
              sum(u.bytes_up)::bigint AS bytes_up, sum(u.bytes_down)::bigint AS bytes_down,
              sum(u.requests)::bigint AS requests
       ${FILTER}
       GROUP BY 1, 2, 3
     ) g
     WHERE $6::timestamptz IS NULL OR (g.period_start, g.key_id) > ($6::timestamptz, $7::text)
     ORDER BY g.period_start, g.key_id
     LIMIT $8`,
    [
      query.accountId,
      query.from,
      query.to,
      query.keyId ?? null,
      query.country ?? null,
      query.after?.periodStart ?? null,
      query.after?.keyId ?? null,
      query.limit ?? null,
    ],
  );
  return rows.map((row) => ({
    periodStart: row.period_start,
    keyId: row.key_id,
    keyName: row.key_name,
    bytesUp: row.bytes_up,
    bytesDown: row.bytes_down,
    requests: row.requests,
  }));
}

export async function usageTotals(
  db: Queryable,
  query: Omit<UsageQuery, 'after' | 'limit' | 'granularity'>,
): Promise<UsageTotals> {
  const [row] = await db.query<{ bytes_up: number; bytes_down: number; requests: number }>(
    `SELECT coalesce(sum(u.bytes_up), 0)::bigint AS bytes_up,
            coalesce(sum(u.bytes_down), 0)::bigint AS bytes_down,
            coalesce(sum(u.requests), 0)::bigint AS requests
     ${FILTER}`,
    [query.accountId, query.from, query.to, query.keyId ?? null, query.country ?? null],
  );
  return {
    bytesUp: row?.bytes_up ?? 0,
    bytesDown: row?.bytes_down ?? 0,
    requests: row?.requests ?? 0,
  };
}

/** Whether the key exists and belongs to the account (another account's key is "not found"). */
export async function ownsKey(db: Queryable, accountId: string, keyId: string): Promise<boolean> {
  const rows = await db.query('SELECT 1 FROM api_keys WHERE id = $1 AND account_id = $2', [
    keyId,
    accountId,
  ]);
  return rows.length > 0;
}
