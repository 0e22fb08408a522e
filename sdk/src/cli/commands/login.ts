/**
 * `ipcola login`: checks a key against the API (GET /v1/me) and stores it, with the API's
 * and the gateway's addresses, for the other commands. The gateway's addresses are asked
 * of the server (a one-line proxy list names them) unless given.
 */
import { createInterface } from 'node:readline/promises';
import { IPCola } from '../../client/ipcola.ts';
import { writeStoredConfig } from '../config-file.ts';
import { type Context, parseCommand } from '../context.ts';
import { UsageError } from '../exit-codes.ts';
import { printJson } from '../output.ts';

export const LOGIN_HELP = `ipcola login [--key KEYID.SECRET] [--api-url URL] [--proxy-url URL] [--socks-url URL]

Checks the key (it needs the api scope) and stores it in the config file, readable by you
only. Without --key it is read from the terminal, or from the first line of stdin.`;

export async function login(context: Context, args: string[]): Promise<void> {
  const { values } = parseCommand(args, {
    'proxy-url': { type: 'string' },
    'socks-url': { type: 'string' },
  });
  const { io } = context;
  const apiKey = values.key ?? (await askForKey(io.stdin, io.stderr));
  if (!apiKey) throw new UsageError('no key given');
  const apiUrl = values['api-url'] ?? (io.env.IPCOLA_API_URL?.trim() || context.stored.apiUrl);
  let ipc: IPCola;
  try {
    ipc = new IPCola({ apiKey, apiUrl });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^IPCola: /, ''));
  }
  const me = await ipc.me();
  const proxyUrl = values['proxy-url'] ?? (await gatewayAddress(ipc, 'url'));
  const socksUrl = values['socks-url'] ?? (await gatewayAddress(ipc, 'socks_url'));
  await writeStoredConfig(context.configFile, {
    apiKey,
    apiUrl: ipc.config.apiUrl,
    ...(proxyUrl ? { proxyUrl } : {}),
    ...(socksUrl ? { socksUrl } : {}),
  });
  const result = {
    account_id: me.account.id,
    key_id: ipc.config.keyId,
    api_url: ipc.config.apiUrl,
    proxy_url: proxyUrl ?? null,
    socks_url: socksUrl ?? null,
    config_file: context.configFile,
  };
  if (values.json) return printJson(io, result);
  io.stdout.write(
    `Logged in to ${result.api_url} as account ${result.account_id} with key ${result.key_id}.\n` +
      `Key stored in ${result.config_file} (mode 0600).\n`,
  );
}

/** `http://host:port` or `socks5h://host:port` as the server prints them; undefined if it cannot. */
async function gatewayAddress(ipc: IPCola, format: 'url' | 'socks_url') {
  try {
    const list = await ipc.proxyLists.create(
      { count: 1, sticky: false, format },
      { maxRetries: 0 },
    );
    const line = list.proxies[0];
    if (!line) return undefined;
    const url = new URL(line);
    return `${url.protocol}//${url.host}`;
  } catch {
    return undefined;
  }
}

async function askForKey(stdin: NodeJS.ReadableStream, prompt: NodeJS.WritableStream) {
  const tty = (stdin as { isTTY?: boolean }).isTTY === true;
  const lines = createInterface({ input: stdin, output: tty ? prompt : undefined, terminal: tty });
  try {
    if (tty) {
      // Echo is muted while the secret is typed, as passwd does.
      const output = lines as unknown as { _writeToOutput?: (text: string) => void };
      const question = 'API key (KEYID.SECRET): ';
      const answer = lines.question(question);
      output._writeToOutput = (text) => {
        if (text === question) prompt.write(text);
      };
      const key = (await answer).trim();
      prompt.write('\n');
      return key;
    }
    for await (const line of lines) return line.trim();
    return '';
  } finally {
    lines.close();
  }
}
