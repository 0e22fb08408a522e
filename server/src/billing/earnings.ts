/**
 * What operators earned, read from the hourly usage rows (each already priced at the
 * operator rate of its hour and exit type): per node and UTC day for the operator, and the
 * part of an operator's earnings still held back from payouts.
 */
import type { Queryable } from '../store/index.ts';

export interface EarningDay {
  /** The UTC day, YYYY-MM-DD. */
  day: string;
  bytes: number;
  earnedMicro: number;
}

const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` of the UTC day `at` falls in. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/**
 * Every UTC day from `from` to `to` (both YYYY-MM-DD, inclusive), with the bytes the node
 * carried and what they earned (zero on days without traffic); null when the node is not
 * the account's.
 */
export async function nodeEarningsByDay(
  db: Queryable,
  accountId: string,
  nodeId: string,
  range: { from: string; to: string },
): Promise<EarningDay[] | null> {
  const owned = await db.query('SELECT 1 FROM nodes WHERE id = $1 AND account_id = $2', [
    nodeId,
    accountId,
  ]);
  if (owned.length === 0) return null;
  const start = new Date(`${range.from}T00:00:00Z`);
  const end = new Date(new Date(`${range.to}T00:00:00Z`).getTime() + DAY_MS);
  const rows = await db.query<{ day: string; bytes: number; earned: number }>(
    `SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
            sum(bytes_up + bytes_down)::bigint AS bytes, sum(earned_micro)::bigint AS earned
     FROM usage_hourly WHERE node_id = $1 AND hour >= $2 AND hour < $3
     GROUP BY 1 ORDER BY 1`,
    [nodeId, start, end],
  );
  const byDay = new Map(rows.map((row) => [row.day, row]));
  const days: EarningDay[] = [];
  for (let at = start.getTime(); at < end.getTime(); at += DAY_MS) {
    const day = utcDay(new Date(at));
    const row = byDay.get(day);
    days.push({ day, bytes: row?.bytes ?? 0, earnedMicro: row?.earned ?? 0 });
  }
  return days;
}

/**
 * The account's earnings from usage hours that started after `since`: not yet payable,
 * since the traffic behind them may still be refunded or disputed.
 */
export async function earningsHeldBack(
  db: Queryable,
  accountId: string,
  since: Date,
): Promise<number> {
  const [row] = await db.query<{ held: number }>(
    `SELECT coalesce(sum(u.earned_micro), 0)::bigint AS held
     FROM usage_hourly u JOIN nodes n ON n.id = u.node_id
     WHERE n.account_id = $1 AND u.hour > $2`,
    [accountId, since],
  );
  return row?.held ?? 0;
}
