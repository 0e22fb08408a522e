/**
 * Balance alerts, checked for the accounts a usage batch charged once it is committed:
 * `balance.low` when the balance is below the account's alert level, `balance.exhausted`
 * at zero or less, each once per crossing, and `key.cap_reached` once per key and month.
 * A server sends one only by disarming it with a conditional UPDATE in the transaction
 * that owes the webhook, so servers flushing at once never send it twice; the journal
 * re-arms the balance alerts when a credit lifts the balance back (journal.ts).
 */
import type { Database, Queryable } from '../store/index.ts';
import type { Webhooks } from '../webhooks/index.ts';
import { formatMoney } from './money.ts';

export interface BalanceWatcherOptions {
  database: Database;
  webhooks: Pick<Webhooks, 'emit'>;
  /** Runs after the alerts for the same accounts: auto top-up. */
  autoTopUp?: { check(accountIds: readonly string[]): Promise<void> } | undefined;
  /** Default: the system clock. */
  now?: () => number;
}

export function moneyData(currency: string, micro: number) {
  return { currency, amount_micro: micro, amount: formatMoney(micro) };
}

/** Checks the accounts a batch charged; pass it as metering's onCharged. */
export function balanceWatcher(options: BalanceWatcherOptions) {
  const { database, webhooks } = options;
  const now = options.now ?? Date.now;

  const balanceAlerts = async (tx: Queryable, accountIds: readonly string[]) => {
    const low = await tx.query<Row & { low_balance_micro: number }>(
      `UPDATE accounts SET balance_low_armed = false
       WHERE id = ANY($1::text[]) AND balance_low_armed AND balance_micro < low_balance_micro
       RETURNING id, currency, balance_micro, low_balance_micro`,
      [accountIds],
    );
    for (const row of low) {
      await webhooks.emit(
        row.id,
        'balance.low',
        {
          balance: moneyData(row.currency, row.balance_micro),
          threshold: moneyData(row.currency, row.low_balance_micro),
        },
        tx,
      );
    }
    const exhausted = await tx.query<Row>(
      `UPDATE accounts SET balance_exhausted_armed = false
       WHERE id = ANY($1::text[]) AND balance_exhausted_armed AND balance_micro <= 0
       RETURNING id, currency, balance_micro`,
      [accountIds],
    );
    for (const row of exhausted) {
      await webhooks.emit(
        row.id,
        'balance.exhausted',
        { balance: moneyData(row.currency, row.balance_micro) },
        tx,
      );
    }
  };

  const capAlerts = async (tx: Queryable, accountIds: readonly string[]) => {
    const at = new Date(now());
    const month = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
    const capped = await tx.query<{
      id: string;
      account_id: string;
      monthly_byte_cap: number;
      month_bytes: number;
    }>(
      `WITH used AS (
         SELECT k.id, coalesce((SELECT sum(u.bytes_up + u.bytes_down) FROM usage_hourly u
                                WHERE u.key_id = k.id AND u.hour >= $2), 0)::bigint AS month_bytes
         FROM api_keys k
         WHERE k.account_id = ANY($1::text[]) AND k.monthly_byte_cap IS NOT NULL
           AND k.cap_reached_month IS DISTINCT FROM $2
       )
       UPDATE api_keys k SET cap_reached_month = $2 FROM used
       WHERE k.id = used.id AND used.month_bytes >= k.monthly_byte_cap
         AND k.cap_reached_month IS DISTINCT FROM $2
       RETURNING k.id, k.account_id, k.monthly_byte_cap, used.month_bytes`,
      [accountIds, month],
    );
    for (const key of capped) {
      await webhooks.emit(
        key.account_id,
        'key.cap_reached',
        {
          key_id: key.id,
          monthly_byte_cap: key.monthly_byte_cap,
          month_bytes: key.month_bytes,
          month: month.toISOString().slice(0, 7),
        },
        tx,
      );
    }
  };

  return async function check(accountIds: readonly string[]): Promise<void> {
    if (accountIds.length === 0) return;
    await database.transaction(async (tx) => {
      await balanceAlerts(tx, accountIds);
      await capAlerts(tx, accountIds);
    });
    await options.autoTopUp?.check(accountIds);
  };
}

interface Row {
  id: string;
  currency: string;
  balance_micro: number;
}
