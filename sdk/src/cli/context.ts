/**
 * What every command gets: its parsed options (the shared ones included), the output, and
 * a client made from the key given, in the environment, or stored by `ipcola login`.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { IPCola } from '../client/ipcola.ts';
import { configPath, readStoredConfig, type StoredConfig } from './config-file.ts';
import { NotLoggedInError, UsageError } from './exit-codes.ts';
import type { Io } from './output.ts';

export const SHARED_OPTIONS = {
  json: { type: 'boolean' },
  key: { type: 'string' },
  'api-url': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export interface Context {
  io: Io;
  configFile: string;
  stored: StoredConfig;
}

export async function makeContext(io: Io): Promise<Context> {
  const configFile = configPath(io.env);
  return { io, configFile, stored: await readStoredConfig(configFile) };
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The command's options and the shared ones; a bad option is a UsageError (exit 2). */
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: typeof SHARED_OPTIONS & O;
    allowPositionals: true;
    strict: true;
  }>
>;

export function parseCommand<O extends Options>(args: string[], options: O): Parsed<O> {
  try {
    return parseArgs({
      args,
      options: { ...SHARED_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export interface SharedValues {
  key?: string | undefined;
  'api-url'?: string | undefined;
}

/** The key from `--key`, else IPCOLA_KEY, else the stored one. */
export function apiKeyOf(context: Context, values: SharedValues): string {
  const key = values.key ?? (context.io.env.IPCOLA_KEY?.trim() || context.stored.apiKey);
  if (!key) {
    throw new NotLoggedInError(
      'no API key: run `ipcola login`, pass --key KEYID.SECRET, or set IPCOLA_KEY',
    );
  }
  return key;
}

export function clientFor(context: Context, values: SharedValues): IPCola {
  const { env } = context.io;
  try {
    return new IPCola({
      apiKey: apiKeyOf(context, values),
      apiUrl: values['api-url'] ?? (env.IPCOLA_API_URL?.trim() || context.stored.apiUrl),
      proxyUrl: env.IPCOLA_PROXY_URL?.trim() || context.stored.proxyUrl,
      socksUrl: env.IPCOLA_SOCKS_URL?.trim() || context.stored.socksUrl,
    });
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message.replace(/^IPCola: /, ''));
    throw error;
  }
}
