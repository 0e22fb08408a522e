/** The hot-state counter group that holds usage until it is flushed to the database. */
export const USAGE_GROUP = 'usage';

export type UsageMetric = 'up' | 'down' | 'requests';

/** Whose traffic it was and where it left: the dimensions usage is kept by. */
export interface UsageOwner {
  keyId: string;
  nodeId: string;
  /** The exit's country (ISO 3166-1 alpha-2, lowercase), '' when the exit declared none. */
  country: string;
}

const COUNTRY = /^([a-z]{2})?$/;

/**
 * `key|node|country|hour|metric`: key and node ids and countries never hold `|`; hour is
 * epoch hours. Fields written before countries were kept (`key|node|hour|metric`) still
 * parse, with country '', so counters left in Redis across an upgrade are not lost.
 */
export function usageField(owner: UsageOwner, hour: number, metric: UsageMetric): string {
  return `${usageFieldPrefix(owner, hour)}${metric}`;
}

/** A usage field up to its metric (`key|node|country|hour|`): one per record, not per metric. */
export function usageFieldPrefix(owner: UsageOwner, hour: number): string {
  // A country the parser below would refuse must not cost the bytes: it is kept as unknown.
  const country = COUNTRY.test(owner.country) ? owner.country : '';
  return `${owner.keyId}|${owner.nodeId}|${country}|${hour}|`;
}

export function parseUsageField(field: string):
  | (UsageOwner & {
      hour: number;
      metric: UsageMetric;
    })
  | null {
  const parts = field.split('|');
  if (parts.length === 4) parts.splice(2, 0, '');
  if (parts.length !== 5) return null;
  const [keyId, nodeId, country, hour, metric] = parts as [string, string, string, string, string];
  if (!keyId || !/^\d+$/.test(hour) || !COUNTRY.test(country)) return null;
  if (metric !== 'up' && metric !== 'down' && metric !== 'requests') return null;
  return { keyId, nodeId, country, hour: Number(hour), metric };
}

/**
 * The allowance buckets a key's bytes count against: its account's balance and its own
 * monthly cap. Grants, returns, pushes and flushes all name them so.
 */
export function allowanceBuckets(keyId: string, accountId: string): [string, string] {
  return [`a:${accountId}`, `k:${keyId}`];
}
