/**
 * Where the gateway is and who we are to it: the API key `KEYID.SECRET` split into the proxy
 * username's key id and the password, and the gateway's HTTP and SOCKS5 addresses.
 */
import { errorFor } from '../errors.ts';
import { type ProxyOptions, usernameParameters } from './targeting.ts';

export interface ProxyConfig {
  /** `KEYID.SECRET`, as `POST /v1/keys` shows it once. */
  apiKey: string;
  /** The gateway's HTTP proxy, e.g. `http://proxy.ipcola.com:8000`. */
  proxyUrl: string;
  /** The gateway's SOCKS5 port, e.g. `socks5h://proxy.ipcola.com:1080`. */
  socksUrl: string;
}

export interface Credentials {
  username: string;
  password: string;
}

// The id goes into the proxy username, whose grammar it must fit; the secret is percent-encoded.
const API_KEY = /^([a-z0-9]{1,32})\.(\S+)$/;

export class Gateway {
  readonly #keyId: string;
  readonly #secret: string;
  readonly #http: URL;
  readonly #socks: URL;

  constructor(config: ProxyConfig) {
    const match = API_KEY.exec(config.apiKey ?? '');
    if (match === null) {
      // Nothing could authenticate with it: say so now rather than as a 407 later.
      throw errorFor('auth_failed', 'apiKey must be KEYID.SECRET, as the key was shown');
    }
    this.#keyId = match[1] as string;
    this.#secret = match[2] as string;
    this.#http = endpoint(config.proxyUrl, 'proxyUrl', ['http:']);
    this.#socks = endpoint(config.socksUrl, 'socksUrl', ['socks5:', 'socks5h:', 'socks:']);
  }

  /** The Basic credentials for these options; throws BadParamsError before any network call. */
  credentials(options: ProxyOptions = {}): Credentials {
    return { username: `${this.#keyId}${usernameParameters(options)}`, password: this.#secret };
  }

  /** `http://KEYID-country-us:SECRET@host:port`. */
  proxyUrl(options: ProxyOptions = {}): string {
    return withCredentials(this.#http, 'http:', this.credentials(options));
  }

  /** `socks5h://KEYID-country-us:SECRET@host:port` (h: the gateway resolves names). */
  socksUrl(options: ProxyOptions = {}): string {
    return withCredentials(this.#socks, 'socks5h:', this.credentials(options));
  }

  /** `http://host:port`, without credentials (Playwright takes them apart). */
  get proxyServer(): string {
    return `http://${this.#http.host}`;
  }
}

function endpoint(raw: string, name: string, protocols: string[]): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw errorFor('invalid_request', `${name} must be a URL such as ${protocols[0]}//host:port`);
  }
  if (!protocols.includes(url.protocol)) {
    throw errorFor('invalid_request', `${name} must start with ${protocols.join(' or ')}//`);
  }
  return url;
}

function withCredentials(base: URL, protocol: string, credentials: Credentials): string {
  // Both parts are percent-encoded: a username is plain ASCII, but a URL is no place to guess.
  const user = encodeURIComponent(credentials.username);
  const password = encodeURIComponent(credentials.password);
  return `${protocol}//${user}:${password}@${base.host}`;
}
