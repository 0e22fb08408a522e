/**
 * `ipcola COMMAND ...`: dispatches to a command and turns whatever it throws into one line
 * on stderr (JSON with --json) and an exit code from exit-codes.ts.
 */
import { SDK_VERSION } from '../client/version.ts';
import { IPColaError } from '../errors.ts';
import { CURL_HELP, curl } from './commands/curl.ts';
import { KEYS_HELP, keys } from './commands/keys.ts';
import { LOGIN_HELP, login } from './commands/login.ts';
import { PROXY_LIST_HELP, proxyList } from './commands/proxy-list.ts';
import { USAGE_HELP, usage } from './commands/usage.ts';
import { type Context, makeContext } from './context.ts';
import { EXIT, exitCodeFor, NotLoggedInError, UsageError } from './exit-codes.ts';
import type { Io } from './output.ts';

type Command = (context: Context, args: string[]) => Promise<unknown>;

const COMMANDS: Record<string, { run: Command; help: string }> = {
  login: { run: login, help: LOGIN_HELP },
  keys: { run: keys, help: KEYS_HELP },
  usage: { run: usage, help: USAGE_HELP },
  'proxy-list': { run: proxyList, help: PROXY_LIST_HELP },
  curl: { run: curl, help: CURL_HELP },
};

export const HELP = `ipcola: the IPCola command line

  ipcola login                 check an API key and store it (0600) for the commands below
  ipcola keys list|create|revoke
  ipcola usage [--csv]         traffic per key and hour
  ipcola proxy-list            ready proxy lines (--country us --count 100 --format url)
  ipcola curl ARGS...          curl through the gateway (--country, --session, ...)

Every command takes --json (machine-readable output), --key KEYID.SECRET and --api-url URL;
IPCOLA_KEY, IPCOLA_API_URL and IPCOLA_PROXY_URL are read too. \`ipcola COMMAND --help\` for more.

Exit codes: 0 done, 1 failed, 2 bad usage, 3 no key or key refused, 4 request refused by
the API, 5 API unreachable or failing; \`ipcola curl\` exits with curl's code.`;

export async function run(argv: string[], io: Io): Promise<number> {
  const [name, ...args] = argv;
  const json = argv.includes('--json');
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.stdout.write(`${HELP}\n`);
      return name === undefined ? EXIT.usage : EXIT.ok;
    }
    if (name === '--version' || name === '-v') {
      io.stdout.write(`${SDK_VERSION}\n`);
      return EXIT.ok;
    }
    const command = COMMANDS[name];
    if (!command) throw new UsageError(`unknown command ${name} (see ipcola --help)`);
    if (name !== 'curl' && (args.includes('--help') || args.includes('-h'))) {
      io.stdout.write(`${command.help}\n`);
      return EXIT.ok;
    }
    const code = await command.run(await makeContext(io), args);
    return typeof code === 'number' ? code : EXIT.ok;
  } catch (error) {
    io.stderr.write(`${json ? JSON.stringify(errorJson(error)) : errorLine(error)}\n`);
    return exitCodeFor(error);
  }
}

function errorLine(error: unknown): string {
  if (error instanceof IPColaError) {
    const where = [
      error.status === undefined ? undefined : `HTTP ${error.status}`,
      error.requestId === undefined ? undefined : `request ${error.requestId}`,
    ].filter(Boolean);
    const suffix = where.length > 0 ? ` (${where.join(', ')})` : '';
    return `ipcola: ${error.code}: ${oneLine(error.message)}${suffix}`;
  }
  const { code, message } = errorJson(error).error;
  return `ipcola: ${code}: ${oneLine(message)}`;
}

function errorJson(error: unknown) {
  if (error instanceof IPColaError) {
    return {
      error: {
        code: error.code,
        message: error.message,
        status: error.status ?? null,
        request_id: error.requestId ?? null,
      },
    };
  }
  const code =
    error instanceof UsageError
      ? 'usage'
      : error instanceof NotLoggedInError
        ? 'not_logged_in'
        : 'failed';
  return { error: { code, message: error instanceof Error ? error.message : String(error) } };
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
