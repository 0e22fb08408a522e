/** `ipcola keys list|create|revoke`. */
import type { IPCola } from '../../client/ipcola.ts';
import { type Context, clientFor, parseCommand } from '../context.ts';
import { UsageError } from '../exit-codes.ts';
import { printJson, printTable } from '../output.ts';

export const KEYS_HELP = `ipcola keys list
ipcola keys create [--name NAME] [--scope proxy] [--scope api]
ipcola keys revoke KEYID [KEYID...]

A new key is proxy only unless --scope api is given; its secret is printed once.`;

export async function keys(context: Context, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'list') return list(context, rest);
  if (action === 'create') return create(context, rest);
  if (action === 'revoke') return revoke(context, rest);
  throw new UsageError(`keys: expected list, create or revoke, not ${action ?? 'nothing'}`);
}

async function list(context: Context, args: string[]) {
  const { values, positionals } = parseCommand(args, {});
  if (positionals.length > 0) throw new UsageError('keys list takes no arguments');
  const ipc: IPCola = clientFor(context, values);
  const all = await ipc.keys.list().toArray();
  if (values.json) return printJson(context.io, all);
  printTable(
    context.io,
    ['ID', 'NAME', 'SCOPES', 'DISABLED', 'CREATED'],
    all.map((key) => [key.id, key.name || '-', key.scopes, key.disabled, key.created_at]),
  );
}

async function create(context: Context, args: string[]) {
  const { values, positionals } = parseCommand(args, {
    name: { type: 'string' },
    scope: { type: 'string', multiple: true },
  });
  if (positionals.length > 0) throw new UsageError('keys create takes no arguments');
  const scopes = values.scope ?? ['proxy'];
  for (const scope of scopes) {
    if (scope !== 'proxy' && scope !== 'api') {
      throw new UsageError(`keys create: --scope is proxy or api, not ${scope}`);
    }
  }
  const ipc = clientFor(context, values);
  const key = await ipc.keys.create({
    ...(values.name === undefined ? {} : { name: values.name }),
    scopes: scopes as ('proxy' | 'api')[],
  });
  if (values.json) return printJson(context.io, key);
  context.io.stdout.write(
    `Created key ${key.id} (${key.scopes.join(', ')}).\n` +
      `Secret (shown once): ${key.secret}\n` +
      `API key: ${key.id}.${key.secret}\n` +
      `HTTP proxy: ${key.http_proxy_url}\n`,
  );
}

async function revoke(context: Context, args: string[]) {
  const { values, positionals } = parseCommand(args, {});
  if (positionals.length === 0) throw new UsageError('keys revoke: which key? (KEYID)');
  const ipc = clientFor(context, values);
  for (const id of positionals) await ipc.keys.revoke(id);
  if (values.json) return printJson(context.io, { revoked: positionals });
  for (const id of positionals) context.io.stdout.write(`Revoked key ${id}.\n`);
}
