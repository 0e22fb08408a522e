/**
 * The price book: what customers pay and operators earn per GB of each exit type, with a
 * country's premium where one is set, from a whole hour on (so each hourly usage row has
 * one price). The gateway reads it synchronously from a copy refreshed every minute and at
 * each hour boundary; the flusher prices rows in SQL from the same table.
 */
import { EXIT_TYPES, type ExitType } from '@ipcola/shared/targeting';
import { ipcolaError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { Queryable } from '../store/index.ts';

export interface Price {
  exitType: ExitType;
  /** '' for the type's price in every country without its own. */
  country: string;
  customerMicroPerGb: number;
  operatorMicroPerGb: number;
  effectiveFrom: Date;
  note: string;
}

export interface PriceChange {
  exitType: ExitType;
  country?: string;
  customerMicroPerGb: number;
  operatorMicroPerGb: number;
  /** A whole hour not before the next one; the next hour by default. */
  effectiveFrom?: Date;
  note?: string;
}

/** What a fresh install sells at (per GB, micro-units): the admin changes them (`npm run admin -- prices`). */
export const DEFAULT_PRICES: Readonly<Record<ExitType, { customer: number; operator: number }>> = {
  residential: { customer: 4_000_000, operator: 400_000 },
  datacenter: { customer: 500_000, operator: 50_000 },
  mobile: { customer: 8_000_000, operator: 800_000 },
};

const HOUR_MS = 3_600_000;
const REFRESH_MS = 60_000;

export interface PriceBook {
  readonly currency: string;
  /** The customer's price per GB for an exit of this type in this country now. */
  customerRate(exitType: ExitType, country?: string): number;
  /** The highest customer price of any exit now: what a connection is charged before its exit is known. */
  highestCustomerRate(): number;
  /** Every price in force now, type defaults first. */
  inForce(): Price[];
  /** Records a price from a whole hour on; refuses a time in the past (charged hours keep their price). */
  set(change: PriceChange): Promise<Price>;
  /** Reads the table again (called every minute, at each hour, and after `set`). */
  refresh(): Promise<void>;
  close(): void;
}

interface PriceRow {
  exit_type: ExitType;
  country: string;
  customer_micro_per_gb: number;
  operator_micro_per_gb: number;
  effective_from: Date;
  note: string;
}

const toPrice = (row: PriceRow): Price => ({
  exitType: row.exit_type,
  country: row.country,
  customerMicroPerGb: row.customer_micro_per_gb,
  operatorMicroPerGb: row.operator_micro_per_gb,
  effectiveFrom: row.effective_from,
  note: row.note,
});

/** The prices in force at `at` for one currency: per (type, country) the latest that started. */
export async function pricesInForce(db: Queryable, currency: string, at: Date): Promise<Price[]> {
  const rows = await db.query<PriceRow>(
    `SELECT DISTINCT ON (exit_type, country)
            exit_type, country, customer_micro_per_gb, operator_micro_per_gb, effective_from, note
     FROM prices WHERE currency = $1 AND effective_from <= $2
     ORDER BY exit_type, country, effective_from DESC`,
    [currency, at],
  );
  return rows.map(toPrice);
}

/** Seeds DEFAULT_PRICES for a currency that has no price at all (a fresh install, or a new currency). */
export async function ensureDefaultPrices(db: Queryable, currency: string): Promise<void> {
  await db.query(
    `INSERT INTO prices (currency, exit_type, country, customer_micro_per_gb, operator_micro_per_gb,
                         effective_from, note)
     SELECT $1, t.exit_type, '', t.customer, t.operator, '1970-01-01T00:00:00Z', 'default'
     FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS t (exit_type, customer, operator)
     WHERE NOT EXISTS (SELECT 1 FROM prices WHERE currency = $1)
     ON CONFLICT DO NOTHING`,
    [
      currency,
      [...EXIT_TYPES],
      EXIT_TYPES.map((type) => DEFAULT_PRICES[type].customer),
      EXIT_TYPES.map((type) => DEFAULT_PRICES[type].operator),
    ],
  );
}

export async function createPriceBook(
  db: Queryable,
  options: { currency: string; now?: () => number; logger?: Pick<Logger, 'warn'> },
): Promise<PriceBook> {
  const now = options.now ?? Date.now;
  const { currency } = options;
  await ensureDefaultPrices(db, currency);
  let current: Price[] = [];
  let byKey = new Map<string, Price>();
  let highest = 0;

  const refresh = async () => {
    current = await pricesInForce(db, currency, new Date(now()));
    byKey = new Map(current.map((price) => [`${price.exitType}:${price.country}`, price]));
    highest = Math.max(0, ...current.map((price) => price.customerMicroPerGb));
  };
  await refresh();

  const keepFresh = () =>
    refresh().catch((error: unknown) =>
      options.logger?.warn({ err: error }, 'reading prices failed; kept the last ones'),
    );
  const timer = setInterval(keepFresh, REFRESH_MS);
  timer.unref();
  // Prices change on the hour: read them again just after each one starts.
  let hourly: NodeJS.Timeout;
  const atNextHour = () => {
    hourly = setTimeout(
      () => {
        void keepFresh();
        atNextHour();
      },
      HOUR_MS - (now() % HOUR_MS) + 50,
    );
    hourly.unref();
  };
  atNextHour();

  const priceOf = (exitType: ExitType, country = ''): Price | undefined =>
    (country && byKey.get(`${exitType}:${country}`)) || byKey.get(`${exitType}:`);

  return {
    currency,
    customerRate(exitType, country) {
      // A type without a price is not sold: the highest price keeps spend bounded.
      return priceOf(exitType, country)?.customerMicroPerGb ?? highest;
    },
    highestCustomerRate: () => highest,
    inForce: () => [...current],
    async set(change) {
      const nextHour = Math.ceil(now() / HOUR_MS) * HOUR_MS;
      const from = change.effectiveFrom ?? new Date(nextHour);
      if (from.getTime() % HOUR_MS !== 0 || from.getTime() < nextHour) {
        throw ipcolaError(
          'invalid_request',
          `effective_from must be a whole hour from ${new Date(nextHour).toISOString()} on: hours already used keep their price`,
        );
      }
      for (const amount of [change.customerMicroPerGb, change.operatorMicroPerGb]) {
        if (!Number.isSafeInteger(amount) || amount < 0) {
          throw ipcolaError('invalid_request', 'prices are whole micro-units, not negative');
        }
      }
      const [row] = await db.query<PriceRow>(
        `INSERT INTO prices (currency, exit_type, country, customer_micro_per_gb,
                             operator_micro_per_gb, effective_from, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (currency, exit_type, country, effective_from) DO UPDATE SET
           customer_micro_per_gb = EXCLUDED.customer_micro_per_gb,
           operator_micro_per_gb = EXCLUDED.operator_micro_per_gb,
           note = EXCLUDED.note
         RETURNING exit_type, country, customer_micro_per_gb, operator_micro_per_gb,
                   effective_from, note`,
        [
          currency,
          change.exitType,
          change.country ?? '',
          change.customerMicroPerGb,
          change.operatorMicroPerGb,
          from,
          change.note ?? '',
        ],
      );
      await refresh();
      if (!row) throw new Error('prices: the inserted row is missing');
      return toPrice(row);
    },
    refresh,
    close() {
      clearInterval(timer);
      clearTimeout(hourly);
    },
  };
}
