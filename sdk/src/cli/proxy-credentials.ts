/**
 * The gateway URL with the key and targeting in its username (`KEYID-country-us-session-
 * job42-ttl-10m`), for `ipcola curl`. A stand-in until the proxy helpers' `proxyUrl`.
 */
import { UsageError } from './exit-codes.ts';

export interface Targeting {
  country?: string | undefined;
  region?: string | undefined;
  city?: string | undefined;
  asn?: string | undefined;
  type?: string | undefined;
  session?: string | undefined;
  ttl?: string | undefined;
}

const RULES: Record<keyof Targeting, RegExp> = {
  country: /^[A-Za-z]{2}$/,
  region: /^[a-z0-9_]{1,64}$/,
  city: /^[a-z0-9_]{1,64}$/,
  asn: /^[1-9]\d{0,9}$/,
  type: /^(residential|datacenter|mobile)$/,
  session: /^[A-Za-z0-9_]{1,64}$/,
  ttl: /^\d+[smh]$/,
};

export function gatewayProxyUrl(
  proxyUrl: string,
  keyId: string,
  secret: string,
  targeting: Targeting,
): string {
  let username = keyId;
  for (const name of Object.keys(RULES) as (keyof Targeting)[]) {
    const value = targeting[name];
    if (value === undefined) continue;
    if (!RULES[name].test(value)) throw new UsageError(`--${name} ${value} is not allowed`);
    username += `-${name}-${name === 'country' ? value.toLowerCase() : value}`;
  }
  const url = new URL(proxyUrl);
  url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(secret);
  return url.href.replace(/\/$/, '');
}
