/**
 * The proxy username grammar (README, "Using the proxy"): `KEYID-country-us-session-job42-ttl-10m`.
 * Options are checked here, before any connection, with the rules the gateway itself applies
 * (`@ipcola/shared/targeting`), so a typo is a `BadParamsError` naming the option instead of a
 * refused connection two causes deep.
 */
import { randomBytes } from 'node:crypto';
import type { components } from '@ipcola/openapi';
import {
  ASN_MAX,
  checkCountry,
  EXIT_TYPES,
  isAsn,
  isExitType,
  isSlug,
  SLUG_RULE,
} from '@ipcola/shared/targeting';
import { errorFor, type IPColaError } from '../errors.ts';

// From the API document rather than @ipcola/shared: the published declarations inline the
// document's types, while the shared package is bundled as code only.
type ExitType = components['schemas']['ExitType'];

/** What the gateway is asked for; every field optional (absent: any exit). */
export interface ProxyOptions {
  /** ISO 3166-1 alpha-2, either case (`'us'`, `'DE'`); `'uk'` is refused: use `'gb'`. */
  country?: string;
  /** A region slug (`'california'`); spaces become `_`. */
  region?: string;
  /** A city slug (`'new_york'` or `'New York'`). */
  city?: string;
  /** Autonomous system number. */
  asn?: number | string;
  type?: ExitType;
  /** Sticky session id: 1-64 of A-Z, a-z, 0-9 and _. The same id keeps the same exit IP. */
  session?: string;
  /** Session life, renewed by use: `'30s'`, `'10m'`, `'2h'` or seconds; at most 24h, default 10m. */
  ttl?: string | number;
}

const OPTION_NAMES = ['country', 'region', 'city', 'asn', 'type', 'session', 'ttl'] as const;
export type ProxyOptionName = (typeof OPTION_NAMES)[number];

const SESSION_ID = /^[A-Za-z0-9_]{1,64}$/;
const TTL = /^([1-9][0-9]{0,5})([smh])$/;
const TTL_UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;
const MAX_TTL_SECONDS = 24 * 3600;

/** Whether a property name is a targeting option (to split `fetch(url, { ...init, country })`). */
export function isProxyOptionName(name: string): name is ProxyOptionName {
  return (OPTION_NAMES as readonly string[]).includes(name);
}

/**
 * The username parameters (`-country-us-session-a-ttl-10m`, '' for none) in the gateway's
 * canonical order; throws BadParamsError for anything the gateway would refuse.
 */
export function usernameParameters(options: ProxyOptions): string {
  if (options === null || typeof options !== 'object') {
    throw badOption('options', 'must be an object');
  }
  for (const name of Object.keys(options)) {
    if (!isProxyOptionName(name)) {
      throw badOption(name, `is not a proxy option (known: ${OPTION_NAMES.join(', ')})`);
    }
  }
  const parts: string[] = [];
  const add = (name: ProxyOptionName, value: string) => parts.push(name, value);
  if (options.country !== undefined) add('country', country(options.country));
  if (options.region !== undefined) add('region', slug('region', options.region));
  if (options.city !== undefined) add('city', slug('city', options.city));
  if (options.asn !== undefined) add('asn', asn(options.asn));
  if (options.type !== undefined) add('type', exitType(options.type));
  if (options.session !== undefined) add('session', sessionId(options.session));
  if (options.ttl !== undefined) {
    // The gateway refuses a ttl without a session rather than ignore it; so do we, earlier.
    if (options.session === undefined) throw badOption('ttl', "needs a 'session'");
    add('ttl', ttl(options.ttl));
  }
  return parts.length === 0 ? '' : `-${parts.join('-')}`;
}

/** A fresh session id: 128 random bits in the session alphabet. */
export function newSessionId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * A session id from anything a tool hands out (Crawlee's `session_AbC12`, a number): kept
 * when valid, otherwise its characters outside the alphabet become `_`, capped at 64.
 */
export function sessionIdFrom(raw: string | number): string {
  const text = String(raw)
    .replace(/[^A-Za-z0-9_]/g, '_')
    .slice(0, 64);
  return text === '' ? '_' : text;
}

function country(value: unknown): string {
  if (typeof value !== 'string') throw badOption('country', 'must be a string such as "us"');
  const checked = checkCountry(value);
  if (!checked.ok) throw badOption('country', `'${clip(value)}' ${checked.reason}`);
  return checked.code;
}

function slug(name: 'region' | 'city', value: unknown): string {
  if (typeof value !== 'string') throw badOption(name, `must be a string`);
  const text = value
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');
  if (!isSlug(text)) {
    throw badOption(name, `'${clip(value)}' must be ${SLUG_RULE} (underscore for a space)`);
  }
  return text;
}

function asn(value: unknown): string {
  const number = typeof value === 'string' && /^[0-9]{1,10}$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !isAsn(number)) {
    throw badOption('asn', `must be a whole number from 1 to ${ASN_MAX}`);
  }
  return String(number);
}

function exitType(value: unknown): ExitType {
  const text = typeof value === 'string' ? value.toLowerCase() : '';
  if (!isExitType(text)) throw badOption('type', `must be one of ${EXIT_TYPES.join(', ')}`);
  return text;
}

function sessionId(value: unknown): string {
  if (typeof value !== 'string' || !SESSION_ID.test(value)) {
    throw badOption('session', 'must be 1-64 of A-Z, a-z, 0-9 and _');
  }
  return value;
}

/** `'10m'`, `'1h'`, `'90s'` or a number of seconds, written with its largest whole unit. */
function ttl(value: unknown): string {
  let seconds: number;
  if (typeof value === 'number') {
    seconds = value;
  } else {
    const match = typeof value === 'string' ? TTL.exec(value.trim().toLowerCase()) : null;
    if (match === null) {
      throw badOption(
        'ttl',
        "must be a number of seconds or a whole number with s, m or h ('10m')",
      );
    }
    seconds = Number(match[1]) * TTL_UNIT_SECONDS[match[2] as keyof typeof TTL_UNIT_SECONDS];
  }
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_TTL_SECONDS) {
    throw badOption('ttl', 'must be a whole number of seconds from 1s to 24h');
  }
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function clip(text: string): string {
  return text.length > 32 ? `${text.slice(0, 32)}...` : text;
}

function badOption(name: string, reason: string): IPColaError {
  return errorFor('bad_params', `proxy option '${name}' ${reason}`);
}
