/**
 * The node's hello: what an exit node announces about itself in its Upgrade request
 * (HELLO_HEADER, JSON). The hub trusts nothing in it until `parseHello` accepted it.
 *
 * Unknown fields are dropped, not refused: agents are upgraded by their operators on
 * their own schedule, and a newer agent announcing an extra optional field must still
 * be able to join an older hub. Every known field is checked strictly.
 */
import { isIP, SocketAddress } from 'node:net';
import {
  ASN_MAX,
  checkCountry,
  EXIT_TYPES,
  type ExitLocation,
  type ExitType,
  isExitType,
  isSlug,
  SLUG_RULE,
} from '../targeting.ts';

/** Its location fields are absent when the operator did not declare them. */
export interface NodeHello extends ExitLocation {
  /** The addresses the node can bind egress connections to (canonical text, no duplicates). */
  readonly exitIps: readonly string[];
  readonly type: ExitType;
  /** How many streams the node carries at once; also its HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. */
  readonly maxStreams: number;
  readonly agentVersion: string;
}

export type HelloResult = { ok: true; hello: NodeHello } | { ok: false; reason: string };

/**
 * Longest hello, in characters. Node's HTTP server refuses header blocks over 16 KiB,
 * so the hello must leave room for the rest of the request.
 */
export const HELLO_MAX_LENGTH = 12 * 1024;
/** Enough for a /24 pool; larger pools would not fit in one header. */
export const HELLO_MAX_EXIT_IPS = 256;
export const HELLO_MAX_STREAMS = 10_000;
const VERSION = /^[A-Za-z0-9.+_-]{1,64}$/;

/** Parses and validates the header value; the result holds only known, normalised fields. */
export function parseHello(text: string): HelloResult {
  if (text.length === 0) return { ok: false, reason: 'hello is empty' };
  if (text.length > HELLO_MAX_LENGTH) {
    return { ok: false, reason: `hello is longer than ${HELLO_MAX_LENGTH} characters` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'hello is not JSON' };
  }
  return validateHello(value);
}

export function validateHello(value: unknown): HelloResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'hello must be a JSON object' };
  }
  const input = value as Record<string, unknown>;
  try {
    const hello: {
      -readonly [K in keyof NodeHello]: NodeHello[K];
    } = {
      exitIps: exitIps(input.exitIps),
      type: nodeType(input.type),
      maxStreams: integer('maxStreams', input.maxStreams, 1, HELLO_MAX_STREAMS),
      agentVersion: text('agentVersion', input.agentVersion, VERSION),
    };
    if (input.country !== undefined) hello.country = country(input.country);
    if (input.region !== undefined) hello.region = slug('region', input.region);
    if (input.city !== undefined) hello.city = slug('city', input.city);
    if (input.asn !== undefined) hello.asn = integer('asn', input.asn, 1, ASN_MAX);
    return { ok: true, hello };
  } catch (error) {
    if (error instanceof HelloFieldError) return { ok: false, reason: error.message };
    throw error;
  }
}

/**
 * The header value for a hello. Throws a TypeError when the hello would be refused,
 * so that a misconfigured agent fails at start-up rather than looping on 400s.
 */
export function encodeHello(hello: NodeHello): string {
  const checked = validateHello(hello);
  if (!checked.ok) throw new TypeError(`invalid hello: ${checked.reason}`);
  // Every validated field is ASCII, so the JSON is a valid header value as it is.
  const encoded = JSON.stringify(checked.hello);
  if (encoded.length > HELLO_MAX_LENGTH) {
    throw new TypeError(`invalid hello: longer than ${HELLO_MAX_LENGTH} characters`);
  }
  return encoded;
}

class HelloFieldError extends Error {}

function exitIps(value: unknown): string[] {
  if (!Array.isArray(value)) throw new HelloFieldError('exitIps must be an array');
  if (value.length === 0) throw new HelloFieldError('exitIps must not be empty');
  if (value.length > HELLO_MAX_EXIT_IPS) {
    throw new HelloFieldError(`exitIps must hold at most ${HELLO_MAX_EXIT_IPS} addresses`);
  }
  const seen = new Set<string>();
  value.forEach((ip: unknown, index) => {
    const canonical = typeof ip === 'string' ? canonicalIp(ip) : null;
    if (canonical === null) {
      throw new HelloFieldError(`exitIps[${index}] is not an IP address`);
    }
    if (seen.has(canonical)) throw new HelloFieldError(`exitIps[${index}] is a duplicate`);
    seen.add(canonical);
  });
  return [...seen];
}

/**
 * The one text form of an IP address (`0:0::1` and `::1` are the same exit IP), or null
 * when `ip` is not an address. Zone ids are refused: they name an interface of the
 * sender's machine and mean nothing to the hub.
 */
export function canonicalIp(ip: string): string | null {
  const family = isIP(ip);
  // isIP takes IPv4 only in its one form (no leading zeros, four parts); a SocketAddress
  // per call cost 1% of the gateway's CPU per new tunnel (the exit IP of every stream).
  if (family === 4) return ip;
  if (family === 0 || ip.includes('%')) return null;
  return new SocketAddress({ address: ip, family: 'ipv6' }).address;
}

function nodeType(value: unknown): ExitType {
  if (typeof value === 'string' && isExitType(value)) return value;
  throw new HelloFieldError(`type must be one of ${EXIT_TYPES.join(', ')}`);
}

/** Either case, lowercased; refused unless assigned, or no gateway could ever target the node. */
function country(value: unknown): string {
  if (typeof value !== 'string') throw new HelloFieldError('country must be a string');
  const checked = checkCountry(value);
  if (!checked.ok) throw new HelloFieldError(`country ${checked.reason}`);
  return checked.code;
}

function slug(name: string, value: unknown): string {
  if (typeof value !== 'string' || !isSlug(value)) {
    throw new HelloFieldError(`${name} must be ${SLUG_RULE}`);
  }
  return value;
}

function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new HelloFieldError(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function text(name: string, value: unknown, pattern: RegExp): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new HelloFieldError(`${name} must match ${pattern.source}`);
  }
  return value;
}
