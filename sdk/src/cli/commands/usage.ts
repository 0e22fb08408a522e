/** `ipcola usage`: traffic per key and period, as a table, CSV (the server's) or JSON. */
import { type Context, clientFor, parseCommand } from '../context.ts';
import { UsageError } from '../exit-codes.ts';
import { printJson, printTable } from '../output.ts';

export const USAGE_HELP = `ipcola usage [--from ISO] [--to ISO] [--granularity hour|day] [--key-id KEYID]
             [--country CC] [--csv]

Bytes up and down and requests per key and period; default the last 24 hours by hour.`;

export async function usage(context: Context, args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(args, {
    from: { type: 'string' },
    to: { type: 'string' },
    granularity: { type: 'string' },
    'key-id': { type: 'string' },
    country: { type: 'string' },
    csv: { type: 'boolean' },
  });
  if (positionals.length > 0) throw new UsageError('usage takes no arguments');
  const granularity = values.granularity;
  if (granularity !== undefined && granularity !== 'hour' && granularity !== 'day') {
    throw new UsageError(`usage: --granularity is hour or day, not ${granularity}`);
  }
  const period: 'hour' | 'day' | undefined = granularity;
  const query = {
    ...(values.from === undefined ? {} : { from: values.from }),
    ...(values.to === undefined ? {} : { to: values.to }),
    ...(period === undefined ? {} : { granularity: period }),
    ...(values['key-id'] === undefined ? {} : { key_id: values['key-id'] }),
    ...(values.country === undefined ? {} : { country: values.country }),
  };
  const ipc = clientFor(context, values);
  if (values.csv) {
    context.io.stdout.write(await ipc.usage.exportCsv(query));
    return;
  }
  const pages = ipc.usage.list(query);
  const first = await pages.page();
  const rows = await pages.toArray();
  if (values.json) {
    return printJson(context.io, {
      from: first.from,
      to: first.to,
      granularity: first.granularity,
      items: rows,
      totals: first.totals,
    });
  }
  printTable(
    context.io,
    ['PERIOD', 'KEY', 'NAME', 'BYTES UP', 'BYTES DOWN', 'REQUESTS'],
    [
      ...rows.map((row) => [
        row.period_start,
        row.key_id,
        row.key_name || '-',
        row.bytes_up,
        row.bytes_down,
        row.requests,
      ]),
      ['total', '', '', first.totals.bytes_up, first.totals.bytes_down, first.totals.requests],
    ],
  );
}
