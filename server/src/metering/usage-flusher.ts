/**
 * Moves metered usage from hot state into the database: `usage_hourly` per key, node,
 * exit country and hour, priced at the hour's prices for the node's exit type, and per
 * batch a `usage` entry per customer and an `earning` entry per operator in the journal
 * (with the cached balances), all in one transaction per batch.
 *
 * Exactly once: hot state seals the counts into a numbered batch, the batch id is
 * recorded in `usage_batches` in the same transaction as its rows, and only then is the
 * batch acknowledged in hot state. A crash before the commit leaves the batch pending
 * (the next flush applies it); a crash after the commit but before the acknowledgement
 * leaves it pending too, and applying it again finds its id and writes nothing.
 *
 * Between the commit and the acknowledgement the batch's bytes leave the allowance
 * buckets (settled once per batch id, so a replay settles nothing twice): from then on
 * the database's balance and caps hold them instead.
 */

import { BYTES_PER_GB, books, postEntry, transfer } from '../billing/index.ts';
import type {
  AllowanceLedger,
  CounterBatch,
  CounterStore,
  Database,
  Queryable,
} from '../store/index.ts';
import { allowanceBuckets, parseUsageField, USAGE_GROUP } from './usage-field.ts';

export interface UsageFlusherOptions {
  counters: CounterStore;
  /** Where the batch's bytes were committed until the database held them. */
  allowances: AllowanceLedger;
  database: Database;
  /** The currency usage is priced and debited in. */
  currency: string;
  intervalMs: number;
  /** A flush that failed; its batch stays pending and is retried on the next one. */
  onError?: (error: unknown) => void;
  /** Counts of keys that no longer exist (their bytes cannot be attributed); never expected. */
  onOrphans?: (batchId: string, keyIds: string[]) => void;
  /**
   * The accounts a batch charged, once it is committed (balance alerts, auto top-up). Not
   * awaited by the flush: its failures go to onError.
   */
  onCharged?: (accountIds: string[]) => Promise<void>;
}

export interface FlushResult {
  /** Batches applied by this flush (pending ones from before included). */
  batches: number;
  /** Batches that had been applied already (a crash before their acknowledgement). */
  replayed: number;
}

export interface UsageFlusher {
  /** Applies every pending batch, then seals and applies what was counted since. */
  flush(): Promise<FlushResult>;
  /** Stops the timer after a last flush. */
  close(): Promise<void>;
}

/** Applied batch ids are kept this long, far longer than hot state keeps a pending batch. */
const BATCH_RETENTION_DAYS = 30;

interface UsageRow {
  keyId: string;
  nodeId: string;
  country: string;
  hour: number;
  up: number;
  down: number;
  requests: number;
}

export function startUsageFlusher(options: UsageFlusherOptions): UsageFlusher {
  const { counters, database } = options;
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  const flushOnce = async (): Promise<FlushResult> => {
    const result: FlushResult = { batches: 0, replayed: 0 };
    const apply = async (batch: CounterBatch) => {
      await options.allowances.beginSettle(batch.id);
      const charged = await database.transaction((tx) => applyBatch(tx, batch, options));
      if (charged && charged.length > 0 && options.onCharged) {
        options.onCharged(charged).catch((error: unknown) => options.onError?.(error));
      }
      await options.allowances.settle(batch.id, await bucketAmounts(database, batch));
      await counters.ack(USAGE_GROUP, batch.id);
      if (charged) result.batches += 1;
      else result.replayed += 1;
    };
    for (const batch of await counters.pending(USAGE_GROUP)) await apply(batch);
    const sealed = await counters.seal(USAGE_GROUP);
    if (sealed) await apply(sealed);
    return result;
  };

  // One flush at a time: a timer tick during a slow flush waits for it rather than racing.
  const flush = (): Promise<FlushResult> => {
    const next = queue.then(flushOnce);
    queue = next.catch(() => {});
    return next;
  };

  const timer = setInterval(() => {
    flush().catch((error: unknown) => options.onError?.(error));
  }, options.intervalMs);
  timer.unref();

  const prune = setInterval(
    () => {
      database
        .query(`DELETE FROM usage_batches WHERE applied_at < now() - make_interval(days => $1)`, [
          BATCH_RETENTION_DAYS,
        ])
        .catch((error: unknown) => options.onError?.(error));
    },
    60 * 60 * 1000,
  );
  prune.unref();

  return {
    flush,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      clearInterval(prune);
      await flush();
    },
  };
}

/** Writes one batch: the accounts it charged; null when it had been written before. */
async function applyBatch(
  tx: Queryable,
  batch: CounterBatch,
  options: UsageFlusherOptions,
): Promise<string[] | null> {
  const fresh = await tx.query(
    'INSERT INTO usage_batches (id) VALUES ($1) ON CONFLICT (id) DO NOTHING RETURNING id',
    [batch.id],
  );
  if (fresh.length === 0) return null;
  const rows = usageRows(batch.counts);
  if (rows.length === 0) return [];

  const columns = [
    rows.map((row) => row.keyId),
    rows.map((row) => row.nodeId),
    rows.map((row) => row.country),
    rows.map((row) => row.hour),
    rows.map((row) => row.up),
    rows.map((row) => row.down),
    rows.map((row) => row.requests),
  ];
  const batchRows = `
    SELECT r.key_id, r.node_id, r.country, r.hour, r.up, r.down, r.requests, k.account_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::bigint[])
      AS r (key_id, node_id, country, hour, up, down, requests)
    JOIN api_keys k ON k.id = r.key_id`;

  const orphans = await tx.query<{ key_id: string }>(
    `SELECT DISTINCT r.key_id FROM unnest($1::text[]) AS r (key_id)
     WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = r.key_id)`,
    [columns[0]],
  );
  if (orphans.length > 0) {
    options.onOrphans?.(
      batch.id,
      orphans.map((row) => row.key_id),
    );
  }

  // Each row is priced once, at its hour's prices, when first written; a row's charge and
  // earning are always floor(bytes × price / 10^9). What this batch adds to them is the
  // difference its bytes make: concurrent flushes of one row serialise on the row's lock,
  // so their differences add up to the row's charge exactly.
  const changed = await tx.query<{
    key_id: string;
    node_id: string;
    country: string;
    hour: number;
    account_id: string;
    operator_id: string | null;
    charged: number;
    earned: number;
    bytes: number;
    customer_micro_per_gb: number;
  }>(
    `WITH batch AS (
       SELECT b.*, coalesce(n.type, 'residential') AS exit_type, n.account_id AS operator_id
       FROM (${batchRows}) b LEFT JOIN nodes n ON n.id = b.node_id
     ), priced AS (
       SELECT b.*, coalesce(p.customer_micro_per_gb, 0) AS customer_price,
              coalesce(p.operator_micro_per_gb, 0) AS operator_price
       FROM batch b LEFT JOIN LATERAL (
         SELECT customer_micro_per_gb, operator_micro_per_gb FROM prices
         WHERE currency = $8 AND exit_type = b.exit_type AND country IN (b.country, '')
           AND effective_from <= to_timestamp(b.hour * 3600)
         ORDER BY (country = b.country) DESC, effective_from DESC LIMIT 1
       ) p ON true
     ), written AS (
       INSERT INTO usage_hourly AS u (key_id, node_id, country, hour, exit_type, bytes_up,
         bytes_down, requests, customer_micro_per_gb, operator_micro_per_gb, charged_micro,
         earned_micro)
       SELECT key_id, node_id, country, to_timestamp(hour * 3600), exit_type, up, down, requests,
              customer_price, operator_price,
              floor((up + down)::numeric * customer_price / 1000000000)::bigint,
              floor((up + down)::numeric * operator_price / 1000000000)::bigint
       FROM priced
       ON CONFLICT (key_id, node_id, country, hour) DO UPDATE SET
         bytes_up = u.bytes_up + EXCLUDED.bytes_up,
         bytes_down = u.bytes_down + EXCLUDED.bytes_down,
         requests = u.requests + EXCLUDED.requests,
         charged_micro = floor((u.bytes_up + u.bytes_down + EXCLUDED.bytes_up + EXCLUDED.bytes_down)
                               ::numeric * u.customer_micro_per_gb / 1000000000)::bigint,
         earned_micro = floor((u.bytes_up + u.bytes_down + EXCLUDED.bytes_up + EXCLUDED.bytes_down)
                              ::numeric * u.operator_micro_per_gb / 1000000000)::bigint
       RETURNING u.key_id, u.node_id, u.country, u.hour, u.bytes_up + u.bytes_down AS total,
                 u.customer_micro_per_gb, u.operator_micro_per_gb, u.charged_micro, u.earned_micro
     )
     SELECT p.key_id, p.node_id, p.country, p.hour, p.account_id, p.operator_id,
            p.up + p.down AS bytes, w.customer_micro_per_gb,
            w.charged_micro - floor((w.total - p.up - p.down)::numeric * w.customer_micro_per_gb
                                    / 1000000000)::bigint AS charged,
            w.earned_micro - floor((w.total - p.up - p.down)::numeric * w.operator_micro_per_gb
                                   / 1000000000)::bigint AS earned
     FROM written w JOIN priced p ON p.key_id = w.key_id AND p.node_id = w.node_id
       AND p.country = w.country AND to_timestamp(p.hour * 3600) = w.hour`,
    [...columns, options.currency],
  );

  // One usage entry per customer and one earning entry per operator for the batch; the
  // journal's (kind, reference) refuses a second.
  const charges = new Map<string, number>();
  const earnings = new Map<string, number>();
  for (const row of changed) {
    charges.set(row.account_id, (charges.get(row.account_id) ?? 0) + row.charged);
    if (row.operator_id) {
      earnings.set(row.operator_id, (earnings.get(row.operator_id) ?? 0) + row.earned);
    }
  }
  for (const [accountId, amount] of charges) {
    await postEntry(tx, {
      kind: 'usage',
      reference: `${batch.id}:${accountId}`,
      currency: options.currency,
      accountId,
      postings: transfer(books.customer(accountId), books.revenue, amount),
    });
  }
  for (const [accountId, amount] of earnings) {
    await postEntry(tx, {
      kind: 'earning',
      reference: `${batch.id}:${accountId}`,
      currency: options.currency,
      accountId,
      postings: transfer(books.operatorCost, books.operator(accountId), amount),
    });
  }
  await queueMeterEvents(tx, batch.id, changed);
  return [...charges.keys()];
}

/**
 * Postpaid accounts are billed through Stripe's meter: one event per usage row this batch
 * charged them, queued in the batch's transaction and named by the batch and the row, so
 * it is queued once and, sent again, is the same event (payments/meter-reporter.ts).
 */
async function queueMeterEvents(
  tx: Queryable,
  batchId: string,
  rows: readonly {
    key_id: string;
    node_id: string;
    country: string;
    hour: number;
    account_id: string;
    charged: number;
  }[],
): Promise<void> {
  const charged = rows.filter((row) => row.charged > 0);
  if (charged.length === 0) return;
  await tx.query(
    `INSERT INTO meter_events_outbox (identifier, account_id, value_micro, hour)
     SELECT r.identifier, r.account_id, r.value, to_timestamp(r.hour * 3600)
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
       AS r (identifier, account_id, value, hour)
     JOIN accounts a ON a.id = r.account_id AND a.postpaid
     ON CONFLICT (identifier) DO NOTHING`,
    [
      charged.map((row) => [batchId, row.key_id, row.node_id, row.country, row.hour].join(':')),
      charged.map((row) => row.account_id),
      charged.map((row) => row.charged),
      charged.map((row) => row.hour),
    ],
  );
}

/**
 * What the batch takes out of each allowance bucket: its bytes from each key's, and their
 * price at each row's customer price from each account's (unrounded micro-units, as the
 * connections committed them). Read from the rows, so a replayed batch settles the same.
 */
async function bucketAmounts(db: Queryable, batch: CounterBatch): Promise<Record<string, number>> {
  const rows = usageRows(batch.counts);
  if (rows.length === 0) return {};
  const priced = await db.query<{
    key_id: string;
    account_id: string;
    bytes: number;
    customer_micro_per_gb: number;
  }>(
    `SELECT r.key_id, k.account_id, r.bytes, u.customer_micro_per_gb
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
       AS r (key_id, node_id, country, hour, bytes)
     JOIN api_keys k ON k.id = r.key_id
     JOIN usage_hourly u ON u.key_id = r.key_id AND u.node_id = r.node_id
       AND u.country = r.country AND u.hour = to_timestamp(r.hour * 3600)`,
    [
      rows.map((row) => row.keyId),
      rows.map((row) => row.nodeId),
      rows.map((row) => row.country),
      rows.map((row) => row.hour),
      rows.map((row) => row.up + row.down),
    ],
  );
  const amounts: Record<string, number> = {};
  for (const row of priced) {
    const [accountBucket, keyBucket] = allowanceBuckets(row.key_id, row.account_id);
    amounts[keyBucket] = (amounts[keyBucket] ?? 0) + row.bytes;
    amounts[accountBucket] =
      (amounts[accountBucket] ?? 0) + (row.bytes * row.customer_micro_per_gb) / BYTES_PER_GB;
  }
  return amounts;
}

/** The batch's counters as one row per key, node, country and hour. */
function usageRows(counts: Readonly<Record<string, number>>): UsageRow[] {
  const rows = new Map<string, UsageRow>();
  for (const [field, value] of Object.entries(counts)) {
    const parsed = parseUsageField(field);
    if (!parsed || !(value > 0)) continue;
    const id = `${parsed.keyId}|${parsed.nodeId}|${parsed.country}|${parsed.hour}`;
    let row = rows.get(id);
    if (!row) {
      row = {
        keyId: parsed.keyId,
        nodeId: parsed.nodeId,
        country: parsed.country,
        hour: parsed.hour,
        up: 0,
        down: 0,
        requests: 0,
      };
      rows.set(id, row);
    }
    row[parsed.metric] += value;
  }
  return [...rows.values()];
}
