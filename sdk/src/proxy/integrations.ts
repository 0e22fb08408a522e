/**
 * The gateway in the shapes browser and crawling tools take: Playwright's `proxy` option,
 * Crawlee's `ProxyConfiguration` (its session ids as sticky sessions) and got-scraping's
 * `proxyUrl`. None of these tools is needed to import the SDK.
 */
import { errorFor } from '../errors.ts';
import type { Gateway } from './endpoints.ts';
import { type ProxyOptions, sessionIdFrom } from './targeting.ts';

/** Playwright's `proxy` launch or context option. */
export interface PlaywrightProxy {
  server: string;
  username: string;
  password: string;
}

export function playwrightProxy(gateway: Gateway, options: ProxyOptions = {}): PlaywrightProxy {
  return { server: gateway.proxyServer, ...gateway.credentials(options) };
}

/** got-scraping's (and got-scraping-based tools') request options. */
export function gotScrapingOptions(
  gateway: Gateway,
  options: ProxyOptions = {},
): { proxyUrl: string } {
  return { proxyUrl: gateway.proxyUrl(options) };
}

/** Targeting for a Crawlee configuration: any option but `session`, which Crawlee's sessions set. */
export type CrawleeProxyOptions = Omit<ProxyOptions, 'session'>;

/**
 * Options for `new ProxyConfiguration(...)`: each Crawlee session id becomes a gateway
 * session (same id, same exit IP until Crawlee retires the session); a request without a
 * session rotates. `ttl` sets how long an idle session keeps its exit.
 */
export function crawleeProxyOptions(
  gateway: Gateway,
  options: CrawleeProxyOptions = {},
): { newUrlFunction: (sessionId?: string | number | null) => string } {
  if ('session' in options) {
    throw errorFor(
      'bad_params',
      "proxy option 'session' is set by Crawlee's sessions; leave it out",
    );
  }
  const { ttl, ...targeting } = options;
  // Checked now, so a bad option fails when the crawler is configured, not on its first page.
  gateway.proxyUrl(targeting);
  if (ttl !== undefined) gateway.proxyUrl({ ...targeting, session: 'x', ttl });
  return {
    newUrlFunction: (sessionId) =>
      sessionId === undefined || sessionId === null
        ? gateway.proxyUrl(targeting)
        : gateway.proxyUrl({
            ...targeting,
            session: sessionIdFrom(sessionId),
            ...(ttl === undefined ? {} : { ttl }),
          }),
  };
}
