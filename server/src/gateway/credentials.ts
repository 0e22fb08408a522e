/**
 * Proxy credentials (README, "Using the proxy"): the username grammar
 * `KEYID-name-value-name-value...` and the Basic `Proxy-Authorization` header.
 *
 * Pure: no I/O, no lookups. Whether the key exists is the caller's business;
 * this module only refuses what can never be valid, and never ignores anything.
 */

import { isUtf8 } from 'node:buffer';
import {
  ASN_MAX,
  checkCountry,
  EXIT_TYPES,
  type ExitType,
  isExitType,
  isSlug,
  SLUG_RULE,
  type Targeting,
} from '@ipcola/shared/targeting';
import { type IPColaError, ipcolaError } from '../errors/index.ts';

export type { Targeting };

export interface ProxyCredentials {
  keyId: string;
  targeting: Targeting;
  session: { id: string; ttlMs: number } | null;
}

// Nothing valid comes near this (the longest valid username is about 300
// characters); the cap bounds all later work before any regex runs.
const MAX_USERNAME_LENGTH = 512;

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DEFAULT_TTL_MS = 10 * MINUTE_MS;
const MAX_TTL_MS = 24 * HOUR_MS;

// All patterns are anchored single character classes with bounded repetition:
// linear, no backtracking to exploit.
const KEY_ID = /^[a-z0-9]{1,32}$/;
const SESSION_ID = /^[A-Za-z0-9_]{1,64}$/;
const ASN = /^[1-9][0-9]{0,9}$/;
const TTL = /^([1-9][0-9]*)([smh])$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

type ParamName = 'country' | 'region' | 'city' | 'asn' | 'type' | 'session' | 'ttl';

// Declaration order is the canonical order formatProxyUsername writes.
const PARAM_NAMES: readonly ParamName[] = [
  'country',
  'region',
  'city',
  'asn',
  'type',
  'session',
  'ttl',
];

/** Parses a proxy username; throws `bad_params` or, for an impossible key id, `auth_failed`. */
export function parseProxyUsername(username: string): ProxyCredentials {
  checkLimits(username);
  const parts = username.split('-');
  const keyId = checkKeyId(parts[0] ?? '');

  const values = new Map<ParamName, string>();
  for (let i = 1; i < parts.length; i += 2) {
    const rawName = parts[i] ?? '';
    const value = parts[i + 1];
    if (rawName === '') {
      throw badParams('username has an empty segment (two dashes in a row, or a trailing dash)');
    }
    const name = rawName.toLowerCase();
    if (!isParamName(name)) {
      throw badParams(`unknown parameter '${clip(rawName)}'`);
    }
    if (value === undefined) {
      throw badParams(`parameter '${name}' has no value`);
    }
    if (value === '') {
      throw badParams(`parameter '${name}' has an empty value`);
    }
    if (values.has(name)) {
      throw badParams(`parameter '${name}' is given more than once`);
    }
    values.set(name, value);
  }

  const targeting: Targeting = {};
  const country = values.get('country');
  if (country !== undefined) targeting.country = parseCountry(country);
  const region = values.get('region');
  if (region !== undefined) targeting.region = parseSlug('region', region);
  const city = values.get('city');
  if (city !== undefined) targeting.city = parseSlug('city', city);
  const asn = values.get('asn');
  if (asn !== undefined) targeting.asn = parseAsn(asn);
  const type = values.get('type');
  if (type !== undefined) targeting.type = parseType(type);

  const sessionId = values.get('session');
  const ttl = values.get('ttl');
  if (sessionId === undefined) {
    // A ttl alone would change nothing; saying so beats silently ignoring it.
    if (ttl !== undefined) throw badParams("parameter 'ttl' needs a 'session' parameter");
    return { keyId, targeting, session: null };
  }
  return {
    keyId,
    targeting,
    session: {
      id: parseSessionId(sessionId),
      ttlMs: ttl === undefined ? DEFAULT_TTL_MS : parseTtl(ttl),
    },
  };
}

/**
 * The parameters of a username without its key id (`country-us-session-a`), as a key's
 * default targeting stores them; '' is none. Throws `bad_params` as the username would.
 */
export function parseUsernameParameters(parameters: string): Omit<ProxyCredentials, 'keyId'> {
  // Any valid key id will do: only the parameters are read.
  const { targeting, session } = parseProxyUsername(parameters === '' ? 'k' : `k-${parameters}`);
  return { targeting, session };
}

/**
 * Reads a `Proxy-Authorization: Basic ...` header. Missing or blank is
 * `auth_required` (so the client gets the challenge); anything unreadable is
 * `auth_failed`. The password may be empty: IP allow-list keys have none.
 */
export function parseBasicProxyAuthorization(header: string | undefined): {
  username: string;
  password: string;
} {
  const value = header?.trim() ?? '';
  if (value === '') {
    throw ipcolaError('auth_required', 'Proxy-Authorization header is missing');
  }
  const space = value.indexOf(' ');
  const scheme = space === -1 ? value : value.slice(0, space);
  if (scheme.toLowerCase() !== 'basic') {
    throw ipcolaError('auth_failed', 'Proxy-Authorization must use the Basic scheme');
  }
  const token = space === -1 ? '' : value.slice(space + 1).trim();
  // Buffer's decoder skips junk silently, so insist the token is exactly what
  // re-encoding the decoded bytes gives back (alphabet, padding, no stray bits).
  const bytes = Buffer.from(token, 'base64');
  if (token === '' || !BASE64.test(token) || bytes.toString('base64') !== token) {
    throw ipcolaError('auth_failed', 'Proxy-Authorization Basic credentials are not valid base64');
  }
  if (!isUtf8(bytes)) {
    throw ipcolaError('auth_failed', 'Proxy-Authorization Basic credentials are not valid UTF-8');
  }
  const decoded = bytes.toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) {
    throw ipcolaError('auth_failed', 'Proxy-Authorization Basic credentials have no colon');
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * The canonical username for a key, targeting and optional session: lowercase
 * values, parameters in a fixed order, ttl always written with its largest
 * whole unit. Validates like the parser, so it never prints an unusable URL.
 */
export function formatProxyUsername(
  keyId: string,
  targeting: Targeting,
  session?: { id: string; ttlMs: number } | null,
): string {
  const parts = [checkKeyId(keyId)];
  const values: Partial<Record<ParamName, string>> = {};
  if (targeting.country !== undefined) values.country = parseCountry(targeting.country);
  if (targeting.region !== undefined) values.region = parseSlug('region', targeting.region);
  if (targeting.city !== undefined) values.city = parseSlug('city', targeting.city);
  if (targeting.asn !== undefined) values.asn = String(parseAsn(String(targeting.asn)));
  if (targeting.type !== undefined) values.type = parseType(targeting.type);
  if (session) {
    values.session = parseSessionId(session.id);
    values.ttl = formatTtl(session.ttlMs);
  }
  for (const name of PARAM_NAMES) {
    const value = values[name];
    if (value !== undefined) parts.push(name, value);
  }
  return parts.join('-');
}

function checkLimits(username: string): void {
  if (username.length > MAX_USERNAME_LENGTH) {
    throw badParams(`username is longer than ${MAX_USERNAME_LENGTH} characters`);
  }
  // Only visible ASCII: CR/LF/NUL would let a username smuggle header lines
  // into logs or upstream requests, and nothing legitimate needs anything else.
  for (let i = 0; i < username.length; i++) {
    const code = username.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) {
      throw badParams(`username has a character outside printable ASCII at position ${i}`);
    }
  }
}

function checkKeyId(keyId: string): string {
  if (!KEY_ID.test(keyId)) {
    // No key can have such an id, so this is a credential failure, not a parameter one.
    throw ipcolaError('auth_failed', 'key id must be 1-32 lowercase letters and digits');
  }
  return keyId;
}

function parseCountry(raw: string): string {
  const checked = checkCountry(raw);
  if (!checked.ok) throw badParams(`country '${clip(raw)}' ${checked.reason}`);
  return checked.code;
}

function parseSlug(name: 'region' | 'city', raw: string): string {
  const slug = raw.toLowerCase();
  if (!isSlug(slug)) {
    throw badParams(`${name} must be ${SLUG_RULE} (underscore for a space)`);
  }
  return slug;
}

function parseAsn(raw: string): number {
  // The digits alone (no leading zeros), so that one ASN has one username.
  if (!ASN.test(raw) || Number(raw) > ASN_MAX) {
    throw badParams(`asn must be a whole number from 1 to ${ASN_MAX} without leading zeros`);
  }
  return Number(raw);
}

function parseType(raw: string): ExitType {
  const type = raw.toLowerCase();
  if (!isExitType(type)) {
    throw badParams(`type must be one of ${EXIT_TYPES.join(', ')}`);
  }
  return type;
}

function parseSessionId(raw: string): string {
  if (!SESSION_ID.test(raw)) {
    throw badParams('session must be 1-64 of A-Z, a-z, 0-9 and _');
  }
  return raw;
}

const TTL_UNIT_MS = { s: SECOND_MS, m: MINUTE_MS, h: HOUR_MS } as const;

function parseTtl(raw: string): number {
  const match = TTL.exec(raw.toLowerCase());
  if (match === null) {
    throw badParams("ttl must be a positive whole number and a unit s, m or h, e.g. '10m'");
  }
  // A long digit string becomes a huge number or Infinity: still refused below.
  const ms = Number(match[1]) * TTL_UNIT_MS[match[2] as keyof typeof TTL_UNIT_MS];
  if (ms > MAX_TTL_MS) {
    throw badParams('ttl must be at most 24h');
  }
  return ms;
}

function formatTtl(ms: number): string {
  if (!Number.isInteger(ms) || ms < SECOND_MS || ms > MAX_TTL_MS || ms % SECOND_MS !== 0) {
    throw badParams('ttl must be a whole number of seconds from 1s to 24h');
  }
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS}h`;
  if (ms % MINUTE_MS === 0) return `${ms / MINUTE_MS}m`;
  return `${ms / SECOND_MS}s`;
}

function isParamName(name: string): name is ParamName {
  return (PARAM_NAMES as readonly string[]).includes(name);
}

// Echoed input is already printable ASCII; clipping keeps the message one short line.
function clip(text: string): string {
  return text.length > 32 ? `${text.slice(0, 32)}...` : text;
}

function badParams(message: string): IPColaError {
  return ipcolaError('bad_params', message);
}
