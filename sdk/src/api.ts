/**
 * `@ipcola/sdk/api`: the typed API client alone, for browsers and other fetch-only
 * runtimes (the portal uses it): no proxy helpers, no Node modules. Authenticated by an API
 * key, or by the browser's session cookie with whatever headers a middleware adds (the
 * portal's CSRF token).
 */
import type { paths } from '@ipcola/openapi';
import type { Client } from 'openapi-fetch';
import { DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS } from './client/defaults.ts';
import { Requester } from './client/requester.ts';

export type { Middleware } from 'openapi-fetch';
export * from './errors.ts';

export interface ApiClientOptions {
  /** The API's origin, e.g. `https://api.ipcola.com` or the page's own. */
  apiUrl: string;
  /** `KEYID.SECRET`; leave out to go by the session cookie. */
  apiKey?: string | undefined;
  /** fetch's `credentials`; `same-origin` for a cookie session. */
  credentials?: RequestInit['credentials'] | undefined;
  /** Retries on 429, 5xx (not 501), timeouts and network errors; default 2. */
  maxRetries?: number | undefined;
  /** Milliseconds one attempt may take; default 60 000. */
  timeout?: number | undefined;
  fetch?: typeof fetch | undefined;
}

/**
 * The typed openapi-fetch client of every API path, with the SDK's transport: an
 * Idempotency-Key on every mutation kept across retries, back-off honouring Retry-After,
 * timeouts, and a typed error (one class per code) thrown for every refusal.
 */
export function createApiClient(options: ApiClientOptions): Client<paths> {
  return new Requester({
    apiUrl: options.apiUrl,
    apiKey: options.apiKey,
    credentials: options.credentials,
    maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
    timeout: options.timeout ?? DEFAULT_TIMEOUT_MS,
    fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
  }).api;
}
