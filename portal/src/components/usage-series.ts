/** Usage rows turned into chart series: bytes both ways per period, one series per group. */
import type { Schemas } from '../api/client.ts';

export interface Series {
  times: number[];
  series: { label: string; values: number[] }[];
}

const PERIOD_SECONDS = { hour: 3600, day: 86_400 } as const;

/** Every period of the range, so that quiet periods show as zero rather than vanish. */
export function periods(from: string, to: string, granularity: 'hour' | 'day'): number[] {
  const step = PERIOD_SECONDS[granularity];
  const start = Math.floor(Date.parse(from) / 1000 / step) * step;
  const end = Date.parse(to) / 1000;
  const times: number[] = [];
  for (let time = start; time < end; time += step) times.push(time);
  return times;
}

export function seriesByKey(
  rows: readonly Schemas['UsageRow'][],
  times: readonly number[],
): Series {
  const index = new Map(times.map((time, position) => [time, position]));
  const byKey = new Map<string, { label: string; values: number[] }>();
  for (const row of rows) {
    let entry = byKey.get(row.key_id);
    if (!entry) {
      entry = { label: row.key_name || row.key_id, values: times.map(() => 0) };
      byKey.set(row.key_id, entry);
    }
    const position = index.get(Date.parse(row.period_start) / 1000);
    if (position !== undefined)
      entry.values[position] = (entry.values[position] ?? 0) + row.bytes_up + row.bytes_down;
  }
  return { times: [...times], series: [...byKey.values()] };
}

/** One series per country, from one report per country. */
export function seriesByCountry(
  reports: readonly { country: string; rows: readonly Schemas['UsageRow'][] }[],
  times: readonly number[],
): Series {
  const series = reports
    .map(({ country, rows }) => {
      const summed = seriesByKey(rows, times).series;
      const values = times.map((_time, position) =>
        summed.reduce((sum, one) => sum + (one.values[position] ?? 0), 0),
      );
      return { label: country.toUpperCase(), values };
    })
    .filter((one) => one.values.some((value) => value > 0));
  return { times: [...times], series };
}
