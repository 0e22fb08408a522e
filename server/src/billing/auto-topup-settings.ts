/**
 * An account's auto top-up settings and alert level (accounts, migrations/0014): what the
 * API shows and saves. Charging is payments/auto-topup.ts.
 */
import type { Queryable } from '../store/index.ts';

export interface AutoTopUpSettings {
  currency: string;
  enabled: boolean;
  /** Charge when the balance falls below this. */
  thresholdMicro: number;
  /** What each charge adds. */
  amountMicro: number;
  /** balance.low is sent when the balance falls below this. */
  lowBalanceMicro: number;
  /** The card saved through Checkout, or null. */
  paymentMethod: { brand: string; last4: string } | null;
  /** The last charge that failed, until one succeeds. */
  lastFailure: { at: Date; message: string } | null;
}

export type AutoTopUpChanges = Partial<
  Pick<AutoTopUpSettings, 'enabled' | 'thresholdMicro' | 'amountMicro' | 'lowBalanceMicro'>
>;

interface Row {
  currency: string;
  auto_topup_enabled: boolean;
  auto_topup_threshold_micro: number;
  auto_topup_amount_micro: number;
  low_balance_micro: number;
  payment_method_id: string | null;
  payment_method_brand: string | null;
  payment_method_last4: string | null;
  auto_topup_failed_at: Date | null;
  auto_topup_failure: string | null;
}

const COLUMNS = `currency, auto_topup_enabled, auto_topup_threshold_micro, auto_topup_amount_micro,
  low_balance_micro, payment_method_id, payment_method_brand, payment_method_last4,
  auto_topup_failed_at, auto_topup_failure`;

function settingsOf(row: Row): AutoTopUpSettings {
  return {
    currency: row.currency,
    enabled: row.auto_topup_enabled,
    thresholdMicro: row.auto_topup_threshold_micro,
    amountMicro: row.auto_topup_amount_micro,
    lowBalanceMicro: row.low_balance_micro,
    paymentMethod: row.payment_method_id
      ? { brand: row.payment_method_brand ?? '', last4: row.payment_method_last4 ?? '' }
      : null,
    lastFailure:
      row.auto_topup_failed_at && row.auto_topup_failure !== null
        ? { at: row.auto_topup_failed_at, message: row.auto_topup_failure }
        : null,
  };
}

export async function readAutoTopUp(
  db: Queryable,
  accountId: string,
): Promise<AutoTopUpSettings | null> {
  const [row] = await db.query<Row>(`SELECT ${COLUMNS} FROM accounts WHERE id = $1`, [accountId]);
  return row ? settingsOf(row) : null;
}

/**
 * Saves the changes. Saving arms auto top-up again (a charge that failed is tried once
 * more if the balance is still below the threshold), and a new alert level arms balance.low.
 */
export async function saveAutoTopUp(
  db: Queryable,
  accountId: string,
  changes: AutoTopUpChanges,
): Promise<AutoTopUpSettings | null> {
  const [row] = await db.query<Row>(
    `UPDATE accounts SET
       auto_topup_enabled = coalesce($2, auto_topup_enabled),
       auto_topup_threshold_micro = coalesce($3, auto_topup_threshold_micro),
       auto_topup_amount_micro = coalesce($4, auto_topup_amount_micro),
       low_balance_micro = coalesce($5, low_balance_micro),
       balance_low_armed = balance_low_armed OR $5::bigint IS NOT NULL,
       auto_topup_armed = true
     WHERE id = $1 RETURNING ${COLUMNS}`,
    [
      accountId,
      changes.enabled ?? null,
      changes.thresholdMicro ?? null,
      changes.amountMicro ?? null,
      changes.lowBalanceMicro ?? null,
    ],
  );
  return row ? settingsOf(row) : null;
}
