/**
 * The proxy helpers: the gateway's URLs, dispatchers and agents for each kind of client,
 * `fetch` with typed refusals and retries, and sticky sessions. `IPCola` delegates to
 * `createProxyHelpers`; every function here also works on its own.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import type { Dispatcher, RequestInit, Response } from 'undici';
import { forwardingAgent, tunnellingAgent } from './agents.ts';
import { type DispatcherOptions, gatewayDispatcher } from './dispatcher.ts';
import { type Credentials, Gateway, type ProxyConfig } from './endpoints.ts';
import { fetchThrough, type RetryOptions } from './fetch.ts';
import {
  type CrawleeProxyOptions,
  crawleeProxyOptions,
  gotScrapingOptions,
  type PlaywrightProxy,
  playwrightProxy,
} from './integrations.ts';
import { createSession, type ProxySession, type SessionOptions } from './session.ts';
import { isProxyOptionName, type ProxyOptions } from './targeting.ts';

export { type DispatcherOptions, gatewayDispatcher } from './dispatcher.ts';
export type { Credentials, ProxyConfig } from './endpoints.ts';
export { Gateway } from './endpoints.ts';
export type { RetryOptions } from './fetch.ts';
export type { CrawleeProxyOptions, PlaywrightProxy } from './integrations.ts';
export { gatewayRefusal } from './refusal.ts';
export type { ProxySession, SessionOptions } from './session.ts';
export {
  isProxyOptionName,
  newSessionId,
  type ProxyOptionName,
  type ProxyOptions,
  usernameParameters,
} from './targeting.ts';

export interface ProxyHelpersConfig extends ProxyConfig {
  /** TLS options for https targets (a private CA in tests); default Node's. */
  requestTls?: ConnectionOptions;
  /** How `fetch` retries refusals a new exit may cure; `{ retries: 0 }` turns it off. */
  retry?: RetryOptions;
}

/** `fetch`'s init: undici's, plus targeting (`{ country: 'de' }`) and per-call retries. */
export type ProxyFetchInit = Omit<RequestInit, 'dispatcher'> &
  ProxyOptions & { retry?: RetryOptions };

export interface ProxyHelpers {
  /** `http://KEYID-country-us:SECRET@host:port`; throws BadParamsError for a bad option. */
  proxyUrl(options?: ProxyOptions): string;
  /** `socks5h://KEYID-country-us:SECRET@host:port`. */
  socksUrl(options?: ProxyOptions): string;
  /** The proxy username and password for these options. */
  credentials(options?: ProxyOptions): Credentials;
  /** An undici dispatcher (for `fetch(url, { dispatcher })` or undici's `request`). */
  dispatcher(options?: ProxyOptions, dispatcherOptions?: DispatcherOptions): Dispatcher;
  /** A node:http agent for plain-http targets (axios `httpAgent`, got `agent.http`). */
  httpAgent(options?: ProxyOptions): Promise<HttpAgent>;
  /** A node:https agent for https targets (axios `httpsAgent`, got `agent.https`). */
  httpsAgent(options?: ProxyOptions, tls?: ConnectionOptions): Promise<HttpsAgent>;
  /** Playwright's `proxy` option: `{ server, username, password }`. */
  playwrightProxy(options?: ProxyOptions): PlaywrightProxy;
  /** got-scraping's `{ proxyUrl }`. */
  gotScrapingOptions(options?: ProxyOptions): { proxyUrl: string };
  /** Options for Crawlee's `new ProxyConfiguration(...)`, its sessions as sticky sessions. */
  crawleeProxyOptions(options?: CrawleeProxyOptions): {
    newUrlFunction: (sessionId?: string | number | null) => string;
  };
  /**
   * fetch through the gateway; a refusal is thrown as its typed error, and without a
   * `session` the refusals a new exit may cure are retried.
   */
  fetch(url: string | URL, init?: ProxyFetchInit): Promise<Response>;
  /** A sticky identity: same exit for each request until `rotate()`. */
  session(options?: SessionOptions, dispatcherOptions?: DispatcherOptions): ProxySession;
  /** Closes the connections `fetch` keeps to the gateway. */
  close(): Promise<void>;
}

// fetch keeps a dispatcher per username for keep-alive; a scraper cycling through
// targetings should not hold a pool for each one forever.
const KEPT_DISPATCHERS = 16;

export function createProxyHelpers(config: ProxyHelpersConfig): ProxyHelpers {
  const gateway = new Gateway(config);
  const tls = config.requestTls ? { requestTls: config.requestTls } : {};
  const kept = new Map<string, Dispatcher>();
  const dispatcher = (options: ProxyOptions = {}, dispatcherOptions: DispatcherOptions = {}) =>
    gatewayDispatcher(gateway.proxyServer, gateway.credentials(options), {
      ...tls,
      ...dispatcherOptions,
    });
  const keptDispatcher = (options: ProxyOptions) => {
    const { username } = gateway.credentials(options);
    let found = kept.get(username);
    if (found === undefined) {
      found = dispatcher(options);
      if (kept.size >= KEPT_DISPATCHERS) {
        const [oldest, old] = kept.entries().next().value as [string, Dispatcher];
        kept.delete(oldest);
        void old.close().catch(() => {});
      }
    } else {
      kept.delete(username);
    }
    kept.set(username, found);
    return found;
  };

  return {
    proxyUrl: (options) => gateway.proxyUrl(options),
    socksUrl: (options) => gateway.socksUrl(options),
    credentials: (options) => gateway.credentials(options),
    dispatcher,
    httpAgent: async (options) => forwardingAgent(gateway.proxyUrl(options)),
    httpsAgent: async (options, agentTls) =>
      tunnellingAgent(gateway.proxyUrl(options), agentTls ?? config.requestTls),
    playwrightProxy: (options) => playwrightProxy(gateway, options),
    gotScrapingOptions: (options) => gotScrapingOptions(gateway, options),
    crawleeProxyOptions: (options) => crawleeProxyOptions(gateway, options),
    async fetch(url, init = {}) {
      const { targeting, rest, retry } = splitInit(init);
      // Checked before the first connection (BadParamsError naming the option).
      gateway.credentials(targeting);
      return fetchThrough(
        () => keptDispatcher(targeting),
        url,
        rest,
        targeting.session !== undefined,
        { ...config.retry, ...retry },
      );
    },
    session: (options, dispatcherOptions) =>
      createSession(
        {
          check: (sessionOptions) => void gateway.credentials(sessionOptions),
          proxyUrl: (sessionOptions) => gateway.proxyUrl(sessionOptions),
          socksUrl: (sessionOptions) => gateway.socksUrl(sessionOptions),
          newDispatcher: dispatcher,
          fetch: (sessionDispatcher, url, init) =>
            fetchThrough(() => sessionDispatcher, url, init, true),
        },
        options,
        dispatcherOptions,
      ),
    async close() {
      const all = [...kept.values()];
      kept.clear();
      await Promise.all(all.map((one) => one.close()));
    },
  };
}

function splitInit(init: ProxyFetchInit): {
  targeting: ProxyOptions;
  rest: RequestInit;
  retry: RetryOptions | undefined;
} {
  const targeting: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  let retry: RetryOptions | undefined;
  for (const [name, value] of Object.entries(init)) {
    if (name === 'retry') retry = value as RetryOptions;
    else if (isProxyOptionName(name)) {
      if (value !== undefined) targeting[name] = value;
    } else rest[name] = value;
  }
  return { targeting: targeting as ProxyOptions, rest: rest as RequestInit, retry };
}
