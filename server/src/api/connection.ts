/** What a customer or operator pastes: proxy URLs, a curl line, the agent command. */
import type { NodeType } from '../accounts/index.ts';
import { formatProxyUsername, type Targeting } from '../gateway/credentials.ts';

/** Where clients reach the proxy and nodes reach the hub: public names, not bind addresses. */
export interface ProxyEndpoint {
  /** Host name or IP address customers dial for the HTTP and SOCKS5 proxy. */
  host: string;
  httpPort: number;
  socksPort: number;
  hubPort: number;
  /** Host name or IP address exit nodes dial; default `host`. */
  hubHost?: string;
  /** The hub serves TLS: the agent command says --tls. */
  hubTls?: boolean;
}

export interface KeyConnection {
  proxy_username: string;
  proxy_password: string;
  http_proxy_url: string;
  socks_proxy_url: string;
  curl_example: string;
}

const HOST = /^[A-Za-z0-9.-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$/;

export function keyConnection(
  endpoint: ProxyEndpoint,
  keyId: string,
  secret: string,
): KeyConnection {
  const host = urlHost(endpoint.host);
  const http = port(endpoint.httpPort);
  const socks = port(endpoint.socksPort);
  // The key id and secret are letters and digits only: nothing to percent-encode.
  const usUsername = formatProxyUsername(keyId, { country: 'us' });
  return {
    proxy_username: keyId,
    proxy_password: secret,
    http_proxy_url: `http://${keyId}:${secret}@${host}:${http}`,
    socks_proxy_url: `socks5h://${keyId}:${secret}@${host}:${socks}`,
    curl_example: `curl -x http://${usUsername}:${secret}@${host}:${http} https://example.com`,
  };
}

/** What a lease's user pastes: the username that uses it and where the proxy listens. */
export function leaseConnection(
  endpoint: ProxyEndpoint,
  keyId: string,
  targeting: Targeting,
  session: { id: string; ttlMs: number },
): { proxy_username: string; http_proxy: string; socks_proxy: string } {
  const host = urlHost(endpoint.host);
  return {
    proxy_username: formatProxyUsername(keyId, targeting, session),
    http_proxy: `${host}:${port(endpoint.httpPort)}`,
    socks_proxy: `${host}:${port(endpoint.socksPort)}`,
  };
}

export type ProxyLineFormat = 'hostport' | 'url' | 'socks_url' | 'curl';

/** One line of a proxy list, in the form a scraping tool takes. */
export function proxyLine(
  endpoint: ProxyEndpoint,
  format: ProxyLineFormat,
  username: string,
  password: string,
): string {
  const host = urlHost(endpoint.host);
  const http = `${host}:${port(endpoint.httpPort)}`;
  switch (format) {
    case 'hostport':
      return `${username}:${password}@${http}`;
    case 'url':
      return `http://${username}:${password}@${http}`;
    case 'socks_url':
      return `socks5h://${username}:${password}@${host}:${port(endpoint.socksPort)}`;
    case 'curl':
      return `curl -x http://${username}:${password}@${http} https://example.com`;
  }
}

export function agentCommand(endpoint: ProxyEndpoint, token: string, type: NodeType): string {
  const hub = `${urlHost(endpoint.hubHost ?? endpoint.host)}:${port(endpoint.hubPort)}`;
  const typeFlag = type === 'residential' ? '' : ` --type ${type}`;
  const tlsFlag = endpoint.hubTls ? ' --tls' : '';
  return `npm run agent -- --hub ${hub}${tlsFlag} --token ${token}${typeFlag}`;
}

/** An IPv6 address goes in brackets inside a URL or host:port. */
function urlHost(host: string): string {
  if (!HOST.test(host))
    throw new RangeError(
      `proxy endpoint host ${JSON.stringify(host)} is not a host name or IP address`,
    );
  return host.includes(':') ? `[${host}]` : host;
}

function port(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65_535) {
    throw new RangeError(`proxy endpoint port ${value} is not a port number (1-65535)`);
  }
  return value;
}
