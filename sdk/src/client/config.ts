import type { ConnectionOptions } from 'node:tls';
import type { RetryOptions } from '../proxy/fetch.ts';
import { DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS } from './defaults.ts';
/**
 * The settings an `IPCola` client runs with, resolved once from its options and the
 * environment, so the API client, the proxy helpers and the CLI all read the same values.
 */

export interface ClientOptions {
  /** `KEYID.SECRET` of a key with the `api` scope; default `IPCOLA_KEY`. */
  apiKey?: string | undefined;
  /** Default `IPCOLA_API_URL`, else `http://127.0.0.1:8080`. */
  apiUrl?: string | undefined;
  /** The gateway's HTTP proxy; default `IPCOLA_PROXY_URL`, else `http://127.0.0.1:8000`. */
  proxyUrl?: string | undefined;
  /** The gateway's SOCKS5 proxy; default `IPCOLA_SOCKS_URL`, else `socks5://127.0.0.1:1080`. */
  socksUrl?: string | undefined;
  /** Retries after the first attempt on 429, 5xx (not 501), timeouts and network errors; default 2. */
  maxRetries?: number | undefined;
  /** Milliseconds one attempt may take, answer body included; default 60 000. */
  timeout?: number | undefined;
  /** The `fetch` requests go through; default the global one. */
  fetch?: typeof fetch | undefined;
  /** TLS options for https targets reached through the gateway (a private CA); default Node's. */
  requestTls?: ConnectionOptions | undefined;
  /** How `ipc.fetch` retries refusals a new exit may cure; `{ retries: 0 }` turns it off. */
  proxyRetry?: RetryOptions | undefined;
}

export interface ResolvedConfig {
  readonly apiKey: string;
  /** The part before the dot: the key id, also the proxy username. */
  readonly keyId: string;
  /** The part after the dot: the proxy password. */
  readonly secret: string;
  readonly apiUrl: string;
  readonly proxyUrl: string;
  readonly socksUrl: string;
  readonly maxRetries: number;
  readonly timeout: number;
  readonly fetch: typeof fetch;
}

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
export const DEFAULT_PROXY_URL = 'http://127.0.0.1:8000';
export const DEFAULT_SOCKS_URL = 'socks5://127.0.0.1:1080';
export { DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS };

const env = (name: string): string | undefined => {
  const value = process.env[name]?.trim();
  return value ? value : undefined;
};

/** Splits `KEYID.SECRET`; the secret may itself hold dots, the id never does. */
export function splitApiKey(apiKey: string): { keyId: string; secret: string } {
  const dot = apiKey.indexOf('.');
  if (dot <= 0 || dot === apiKey.length - 1 || /\s/.test(apiKey)) {
    throw new TypeError('IPCola: the API key must be KEYID.SECRET (as POST /v1/keys showed it)');
  }
  return { keyId: apiKey.slice(0, dot), secret: apiKey.slice(dot + 1) };
}

function url(name: string, value: string, protocols: string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new TypeError(`IPCola: ${name} is not a URL: ${value}`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new TypeError(`IPCola: ${name} must be ${protocols.join(' or ')}: ${value}`);
  }
  return value.replace(/\/+$/, '');
}

function count(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new TypeError(`IPCola: ${name} must be an integer of at least ${min}, not ${value}`);
  }
  return value;
}

export function resolveConfig(options: ClientOptions = {}): ResolvedConfig {
  const apiKey = options.apiKey ?? env('IPCOLA_KEY');
  if (!apiKey) {
    throw new TypeError(
      'IPCola: no API key: pass { apiKey: "KEYID.SECRET" } or set IPCOLA_KEY (or run `npx ipcola login`)',
    );
  }
  return {
    apiKey,
    ...splitApiKey(apiKey),
    apiUrl: url('apiUrl', options.apiUrl ?? env('IPCOLA_API_URL') ?? DEFAULT_API_URL, [
      'http:',
      'https:',
    ]),
    proxyUrl: url('proxyUrl', options.proxyUrl ?? env('IPCOLA_PROXY_URL') ?? DEFAULT_PROXY_URL, [
      'http:',
      'https:',
    ]),
    socksUrl: url('socksUrl', options.socksUrl ?? env('IPCOLA_SOCKS_URL') ?? DEFAULT_SOCKS_URL, [
      'socks5:',
      'socks5h:',
    ]),
    maxRetries: count('maxRetries', options.maxRetries ?? DEFAULT_MAX_RETRIES, 0),
    timeout: count('timeout', options.timeout ?? DEFAULT_TIMEOUT_MS, 1),
    fetch: options.fetch ?? globalThis.fetch,
  };
}
