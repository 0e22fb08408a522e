/**
 * The URL a supplier registers its proxy with: `socks5://user:password@host:port` or
 * `http://user:password@host:port`. Strict, because a mistake here only shows later as
 * every stream through the node failing: the port must be written out, nothing may
 * follow the authority, and the host must be a plain IP literal or DNS name.
 */
import { normalizeTargetHost } from '@ipcola/shared/exit-policy';

export type UpstreamProtocol = 'socks5' | 'http';

export interface UpstreamProxy {
  readonly protocol: UpstreamProtocol;
  /** A canonical IP literal or a lowercase DNS name (resolved, and checked, when dialled). */
  readonly host: string;
  readonly port: number;
  /** Absent when the proxy takes no credentials. */
  readonly credentials?: { readonly username: string; readonly password: string };
}

export type ParsedProxyUrl = { ok: true; proxy: UpstreamProxy } | { ok: false; reason: string };

const PROTOCOLS: Readonly<Record<string, UpstreamProtocol>> = {
  'socks5:': 'socks5',
  'http:': 'http',
};
export const PROXY_URL_MAX_LENGTH = 2048;
/** RFC 1929 carries each of them in at most 255 bytes; HTTP proxies get the same bound. */
const CREDENTIAL_MAX_BYTES = 255;
const SHAPE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/s;
const HOST_PORT = /^(\[[^\]]*\]|[^:[\]]*):([0-9]{1,5})$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

const EXPECTED = 'expected socks5://user:password@host:port or http://user:password@host:port';

export function parseUpstreamUrl(text: string): ParsedProxyUrl {
  const refuse = (reason: string): ParsedProxyUrl => ({ ok: false, reason });
  if (text.length > PROXY_URL_MAX_LENGTH) {
    return refuse(`is longer than ${PROXY_URL_MAX_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return refuse(`is not a URL (${EXPECTED})`);
  }
  const protocol = PROTOCOLS[url.protocol];
  if (!protocol) {
    return refuse(`scheme "${url.protocol}" is not supported (use socks5:// or http://)`);
  }
  const shape = SHAPE.exec(text);
  if (!shape) return refuse(`is not in the form ${EXPECTED}`);
  const [, authority = '', rest = ''] = shape;
  if (rest !== '' && rest !== '/') {
    return refuse('must end after host:port (no path, query or fragment)');
  }
  const hostPort = HOST_PORT.exec(authority.slice(authority.lastIndexOf('@') + 1));
  if (!hostPort) return refuse('must name the port after the host (host:port)');
  const [, rawHost = '', rawPort = ''] = hostPort;
  const port = Number(rawPort);
  if (port < 1 || port > 65_535) return refuse(`port ${rawPort} is out of range (1-65535)`);
  const host = normalizeTargetHost(rawHost);
  if (host.kind === 'invalid') return refuse(`host ${JSON.stringify(rawHost)} is not valid`);

  const credentials = parseCredentials(url, protocol);
  if (typeof credentials === 'string') return refuse(credentials);
  const proxy: UpstreamProxy = {
    protocol,
    host: host.kind === 'ip' ? host.address : host.name,
    port,
    ...(credentials ? { credentials } : {}),
  };
  return { ok: true, proxy };
}

/** The user name and password, or null for none, or why they cannot be used. */
function parseCredentials(
  url: URL,
  protocol: UpstreamProtocol,
): { username: string; password: string } | null | string {
  if (url.username === '' && url.password === '') return null;
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    return 'has a malformed percent-escape in its user name or password';
  }
  if (username === '') return 'has a password but no user name';
  for (const [what, value] of [
    ['user name', username],
    ['password', password],
  ] as const) {
    if (Buffer.byteLength(value) > CREDENTIAL_MAX_BYTES) {
      return `${what} is longer than ${CREDENTIAL_MAX_BYTES} bytes`;
    }
    if (CONTROL.test(value)) return `${what} holds control characters`;
  }
  if (protocol === 'socks5' && password === '') {
    return 'needs a password with its user name (SOCKS5 user/password authentication)';
  }
  if (protocol === 'http' && username.includes(':')) {
    return 'user name must not hold ":" (HTTP Basic authentication)';
  }
  return { username, password };
}

/** The proxy as a URL without its password: safe for answers and logs. */
export function describeProxy(proxy: UpstreamProxy): string {
  const user = proxy.credentials ? `${encodeURIComponent(proxy.credentials.username)}@` : '';
  const host = proxy.host.includes(':') ? `[${proxy.host}]` : proxy.host;
  return `${proxy.protocol}://${user}${host}:${proxy.port}`;
}
