/**
 * `new IPCola({ apiKey })`: the API, one namespace per resource, all sharing one resolved
 * `config` (which the proxy helpers read too: the key's id and secret, the gateway's
 * proxy and SOCKS URLs).
 */
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
