export * from './client/config.ts';
export { IPCola } from './client/ipcola.ts';
export { type CursorPage, type ItemOf, PagedList } from './client/pagination.ts';
export type { RequestOptions } from './client/requester.ts';
export { SDK_VERSION } from './client/version.ts';
export * from './errors.ts';
export {
  type CrawleeProxyOptions,
  type Credentials,
  createProxyHelpers,
  type DispatcherOptions,
  Gateway,
  gatewayDispatcher,
  gatewayRefusal,
  newSessionId,
  type PlaywrightProxy,
  type ProxyFetchInit,
  type ProxyHelpers,
  type ProxyHelpersConfig,
  type ProxyOptions,
  type ProxySession,
  type RetryOptions,
  type SessionOptions,
  usernameParameters,
} from './proxy/index.ts';
