/**
 * Moves metered usage from hot state into the database: `usage_hourly` per key, node,
 * exit country and hour, and a `usage` debit per account in the ledger (with the cached
 * balance), all in one transaction per batch.
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
  intervalMs: number;
  /** A flush that failed; its batch stays pending and is retried on the next one. */
  onError?: (error: unknown) => void;
  /** Counts of keys that no longer exist (their bytes cannot be attributed); never expected. */
  onOrphans?: (batchId: string, keyIds: string[]) => void;
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
      const written = await database.transaction((tx) => applyBatch(tx, batch, options));
      await options.allowances.settle(batch.id, await bucketBytes(database, batch));
      await counters.ack(USAGE_GROUP, batch.id);
      if (written) result.batches += 1;
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

/** Writes one batch; false when it had been written before. */
async function applyBatch(
  tx: Queryable,
  batch: CounterBatch,
  options: UsageFlusherOptions,
): Promise<boolean> {
  const fresh = await tx.query(
    'INSERT INTO usage_batches (id) VALUES ($1) ON CONFLICT (id) DO NOTHING RETURNING id',
    [batch.id],
  );
  if (fresh.length === 0) return false;
  const rows = usageRows(batch.counts);
  if (rows.length === 0) return true;

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

  await tx.query(
    `INSERT INTO usage_hourly (key_id, node_id, country, hour, bytes_up, bytes_down, requests)
     SELECT key_id, node_id, country, to_timestamp(hour * 3600), up, down, requests
     FROM (${batchRows}) b
     ON CONFLICT (key_id, node_id, country, hour) DO UPDATE SET
       bytes_up = usage_hourly.bytes_up + EXCLUDED.bytes_up,
       bytes_down = usage_hourly.bytes_down + EXCLUDED.bytes_down,
       requests = usage_hourly.requests + EXCLUDED.requests`,
    columns,
  );
  // One debit per account and batch; the ledger's (kind, reference) key refuses a second.
  await tx.query(
    `WITH per_account AS (
       SELECT account_id, sum(up + down) AS bytes FROM (${batchRows}) b GROUP BY account_id
     ), debited AS (
       INSERT INTO ledger (account_id, kind, bytes, reference)
       SELECT account_id, 'usage', -bytes, $8::text || ':' || account_id FROM per_account WHERE bytes > 0
       RETURNING account_id, -bytes AS bytes
     )
     UPDATE accounts a SET balance_bytes = a.balance_bytes - d.bytes
     FROM debited d WHERE a.id = d.account_id`,
    [...columns, batch.id],
  );
  return true;
}

/** The batch's bytes per allowance bucket (each key's, and its account's). */
async function bucketBytes(db: Queryable, batch: CounterBatch): Promise<Record<string, number>> {
  const perKey = new Map<string, number>();
  for (const row of usageRows(batch.counts)) {
    perKey.set(row.keyId, (perKey.get(row.keyId) ?? 0) + row.up + row.down);
  }
  if (perKey.size === 0) return {};
  const keys = await db.query<{ id: string; account_id: string }>(
    'SELECT id, account_id FROM api_keys WHERE id = ANY($1::text[])',
    [[...perKey.keys()]],
  );
  const amounts: Record<string, number> = {};
  for (const key of keys) {
    const bytes = perKey.get(key.id) ?? 0;
    for (const bucket of allowanceBuckets(key.id, key.account_id)) {
      amounts[bucket] = (amounts[bucket] ?? 0) + bytes;
    }
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
