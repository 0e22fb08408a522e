/**
 * `new IPCola({ apiKey })`: the API, one namespace per resource, and the gateway's proxy
 * helpers (`fetch`, `session`, `proxyUrl`, dispatchers and agents), all sharing one
 * resolved `config`: the key's id and secret, the API's URL, the gateway's proxy and
 * SOCKS URLs.
 */
import { createProxyHelpers, type ProxyHelpers } from '../proxy/index.ts';
import { type ClientOptions, type ResolvedConfig, resolveConfig } from './config.ts';
import { Requester, type RequestOptions } from './requester.ts';
import { Auth } from './resources/auth.ts';
import { Billing } from './resources/billing.ts';
import { Keys } from './resources/keys.ts';
import { Leases } from './resources/leases.ts';
import { Nodes } from './resources/nodes.ts';
import { Operations } from './resources/operations.ts';
import { Payouts } from './resources/payouts.ts';
import { ProxyLists } from './resources/proxy-lists.ts';
import { Regions } from './resources/regions.ts';
import { Usage } from './resources/usage.ts';
import { Webhooks } from './resources/webhooks.ts';

export class IPCola {
  readonly config: ResolvedConfig;
  /**
   * The typed openapi-fetch client for any path of the API document, with the same key,
   * retries and Idempotency-Key as the namespaces; answers `{ data }` or throws.
   */
  readonly api: Requester['api'];

  readonly keys: Keys;
  readonly leases: Leases;
  readonly proxyLists: ProxyLists;
  readonly regions: Regions;
  readonly nodes: Nodes;
  readonly usage: Usage;
  readonly billing: Billing;
  readonly payouts: Payouts;
  readonly webhooks: Webhooks;
  readonly auth: Auth;
  readonly operations: Operations;

  readonly #requester: Requester;

  /** fetch through the gateway: `ipc.fetch(url, { country: 'de' })`; refusals are typed errors. */
  readonly fetch: ProxyHelpers['fetch'];
  /** A sticky identity: `ipc.session({ country: 'us', ttl: '10m' })`, same exit until `rotate()`. */
  readonly session: ProxyHelpers['session'];
  /** `http://KEYID-country-us:SECRET@host:port`; a bad option throws BadParamsError. */
  readonly proxyUrl: ProxyHelpers['proxyUrl'];
  /** `socks5h://KEYID-country-us:SECRET@host:port`. */
  readonly socksUrl: ProxyHelpers['socksUrl'];
  /** The proxy username and password for these options. */
  readonly credentials: ProxyHelpers['credentials'];
  /** An undici dispatcher for `fetch(url, { dispatcher })` or undici's `request`. */
  readonly dispatcher: ProxyHelpers['dispatcher'];
  /** A node:http agent for plain-http targets (axios `httpAgent`, got `agent.http`). */
  readonly httpAgent: ProxyHelpers['httpAgent'];
  /** A node:https agent for https targets (axios `httpsAgent`, got `agent.https`). */
  readonly httpsAgent: ProxyHelpers['httpsAgent'];
  /** Playwright's `proxy` launch option. */
  readonly playwrightProxy: ProxyHelpers['playwrightProxy'];
  /** got-scraping's `{ proxyUrl }`. */
  readonly gotScrapingOptions: ProxyHelpers['gotScrapingOptions'];
  /** Options for Crawlee's `new ProxyConfiguration(...)`: its sessions become sticky sessions. */
  readonly crawleeProxyOptions: ProxyHelpers['crawleeProxyOptions'];
  /** Closes the connections `ipc.fetch` keeps to the gateway. */
  readonly close: ProxyHelpers['close'];

  constructor(options: ClientOptions = {}) {
    this.config = resolveConfig(options);
    this.#requester = new Requester(this.config);
    this.api = this.#requester.api;
    this.keys = new Keys(this.#requester);
    this.leases = new Leases(this.#requester);
    this.proxyLists = new ProxyLists(this.#requester);
    this.regions = new Regions(this.#requester);
    this.nodes = new Nodes(this.#requester);
    this.usage = new Usage(this.#requester);
    this.billing = new Billing(this.#requester);
    this.payouts = new Payouts(this.#requester);
    this.webhooks = new Webhooks(this.#requester);
    this.auth = new Auth(this.#requester);
    this.operations = new Operations(this.#requester);

    const proxy = createProxyHelpers({
      apiKey: this.config.apiKey,
      proxyUrl: this.config.proxyUrl,
      socksUrl: this.config.socksUrl,
      ...(options.requestTls ? { requestTls: options.requestTls } : {}),
      ...(options.proxyRetry ? { retry: options.proxyRetry } : {}),
    });
    this.fetch = proxy.fetch;
    this.session = proxy.session;
    this.proxyUrl = proxy.proxyUrl;
    this.socksUrl = proxy.socksUrl;
    this.credentials = proxy.credentials;
    this.dispatcher = proxy.dispatcher;
    this.httpAgent = proxy.httpAgent;
    this.httpsAgent = proxy.httpsAgent;
    this.playwrightProxy = proxy.playwrightProxy;
    this.gotScrapingOptions = proxy.gotScrapingOptions;
    this.crawleeProxyOptions = proxy.crawleeProxyOptions;
    this.close = proxy.close;
  }

  /** `console.log(ipc)` in a log must not print the key's secret. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    const { keyId, apiUrl, proxyUrl, socksUrl } = this.config;
    return `IPCola ${JSON.stringify({ keyId, apiUrl, proxyUrl, socksUrl })}`;
  }

  /** The account and user the key belongs to (`user` is null for a key). */
  me(options?: RequestOptions) {
    return this.#requester.call(options, (init) => this.#requester.api.GET('/v1/me', { ...init }));
  }
}
