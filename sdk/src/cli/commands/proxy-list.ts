/** `ipcola proxy-list`: N ready proxy lines from POST /v1/proxy-lists, one per line. */
import { type Context, clientFor, parseCommand } from '../context.ts';
import { UsageError } from '../exit-codes.ts';
import { printJson } from '../output.ts';

export const PROXY_LIST_HELP = `ipcola proxy-list [--count N] [--format hostport|url|socks_url|curl] [--rotating]
                  [--country CC] [--region SLUG] [--city SLUG] [--asn N]
                  [--type residential|datacenter|mobile] [--ttl SECONDS]

Sticky lines (each its own session) unless --rotating.`;

const FORMATS = ['hostport', 'url', 'socks_url', 'curl'] as const;
const TYPES = ['residential', 'datacenter', 'mobile'] as const;

export async function proxyList(context: Context, args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(args, {
    count: { type: 'string' },
    format: { type: 'string' },
    rotating: { type: 'boolean' },
    country: { type: 'string' },
    region: { type: 'string' },
    city: { type: 'string' },
    asn: { type: 'string' },
    type: { type: 'string' },
    ttl: { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError('proxy-list takes no arguments');
  const format = oneOf('--format', values.format, FORMATS);
  const type = oneOf('--type', values.type, TYPES);
  const body = {
    ...(values.count === undefined ? {} : { count: integer('--count', values.count) }),
    ...(format === undefined ? {} : { format }),
    ...(values.rotating ? { sticky: false } : {}),
    ...(values.country === undefined ? {} : { country: values.country.toLowerCase() }),
    ...(values.region === undefined ? {} : { region: values.region }),
    ...(values.city === undefined ? {} : { city: values.city }),
    ...(values.asn === undefined ? {} : { asn: integer('--asn', values.asn) }),
    ...(type === undefined ? {} : { type }),
    ...(values.ttl === undefined ? {} : { ttl_seconds: integer('--ttl', values.ttl) }),
  };
  const list = await clientFor(context, values).proxyLists.create(body);
  if (values.json) return printJson(context.io, list);
  context.io.stdout.write(list.proxies.map((line) => `${line}\n`).join(''));
}

function oneOf<T extends string>(
  flag: string,
  value: string | undefined,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} is one of ${allowed.join(', ')}, not ${value}`);
}

function integer(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} takes a whole number, not ${value}`);
  return Number(value);
}
