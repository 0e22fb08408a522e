/** The hot-state counter group that holds usage until it is flushed to the database. */
export const USAGE_GROUP = 'usage';

export type UsageMetric = 'up' | 'down' | 'requests';

/** `key|node|hour|metric`: key and node ids never hold `|`; hour is epoch hours. */
export function usageField(
  keyId: string,
  nodeId: string,
  hour: number,
  metric: UsageMetric,
): string {
  return `${keyId}|${nodeId}|${hour}|${metric}`;
}

export function parseUsageField(
  field: string,
): { keyId: string; nodeId: string; hour: number; metric: UsageMetric } | null {
  const [keyId, nodeId, hour, metric] = field.split('|');
  if (!keyId || nodeId === undefined || !hour || !/^\d+$/.test(hour)) return null;
  if (metric !== 'up' && metric !== 'down' && metric !== 'requests') return null;
  return { keyId, nodeId, hour: Number(hour), metric };
}
