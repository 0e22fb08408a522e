/**
 * `ipcola curl [targeting] CURL-ARGS...`: the system curl through the gateway. The proxy
 * URL, secret included, goes to curl in its environment (not its arguments, which any user
 * of the machine can list); curl's own exit code is the command's.
 */
import { spawn } from 'node:child_process';
import { BadParamsError } from '../../errors.ts';
import type { ProxyOptions } from '../../proxy/index.ts';
import { type Context, clientFor } from '../context.ts';
import { EXIT, UsageError } from '../exit-codes.ts';

export const CURL_HELP = `ipcola curl [--country CC] [--region SLUG] [--city SLUG] [--asn N] [--type TYPE]
           [--session ID] [--ttl 10m] [--key KEYID.SECRET] [--json] [--] CURL-ARGS...

Runs curl through the gateway with the stored key. Options before the first curl argument
(or before --) are ipcola's; --json there prints ipcola's own errors as JSON. Exits with
curl's exit code.`;

type Targeting = Record<keyof ProxyOptions, string>;

const TARGETING = new Set(['country', 'region', 'city', 'asn', 'type', 'session', 'ttl']);
const VALUED = new Set([...TARGETING, 'key', 'api-url']);

export async function curl(context: Context, args: string[]): Promise<number> {
  const targeting: Partial<Targeting> = {};
  const shared: { key?: string; 'api-url'?: string } = {};
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index] ?? '';
    if (arg === '--') {
      index++;
      break;
    }
    if (arg === '--json') continue;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const name = match?.[1];
    if (!name || !VALUED.has(name)) break;
    const value = match?.[2] ?? args[++index];
    if (value === undefined) throw new UsageError(`curl: --${name} needs a value`);
    if (TARGETING.has(name)) targeting[name as keyof Targeting] = value;
    else shared[name as 'key' | 'api-url'] = value;
  }
  const curlArgs = args.slice(index);
  if (curlArgs.length === 0) throw new UsageError('curl: what should curl fetch? (a URL)');
  const proxy = proxyUrlFor(clientFor(context, shared), targeting);
  const child = spawn('curl', curlArgs, {
    stdio: ['inherit', 'pipe', 'pipe'],
    env: {
      ...context.io.env,
      http_proxy: proxy,
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
      // Local targets (the demo's) must go through the gateway too.
      NO_PROXY: '',
      no_proxy: '',
    },
  });
  child.stdout.pipe(context.io.stdout, { end: false });
  child.stderr.pipe(context.io.stderr, { end: false });
  return new Promise((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') reject(new Error('curl is not installed (not on PATH)'));
      else reject(error);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : EXIT.failed)));
  });
}

/** The gateway URL for the flags, a bad one refused as bad usage (exit 2) before curl runs. */
function proxyUrlFor(ipc: ReturnType<typeof clientFor>, targeting: Partial<Targeting>): string {
  try {
    return ipc.proxyUrl(targeting as ProxyOptions);
  } catch (error) {
    if (error instanceof BadParamsError) throw new UsageError(`curl: ${error.message}`);
    throw error;
  }
}
