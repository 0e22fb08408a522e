/**
 * Exit policy: which targets an exit node may connect to.
 *
 * The agent must never become a door into the operator's own network or into a
 * cloud metadata service. Decisions are made on resolved IP addresses, never on
 * host-name text, and the addresses that were checked are the only ones the
 * caller may connect to (see `resolveTarget`).
 *
 * Rules:
 * - An address is allowed only when ipaddr.js classifies it as 'unicast' (and,
 *   for IPv6, it lies in global unicast 2000::/3), it is not a known cloud
 *   metadata address, and any IPv4 address embedded in it passes the same test.
 * - `--allow-target` CIDRs are the only exception mechanism: an address inside
 *   one is allowed whatever its range. They are matched against the address
 *   itself (IPv4-mapped IPv6 counts as the IPv4 address it maps, since it is the
 *   same destination), not against an IPv4 address embedded by NAT64, 6to4,
 *   Teredo or the IPv4-compatible form.
 * - SMTP ports (25, 465, 587) are refused even for allow-listed addresses.
 */
import { promises as dnsPromises, type LookupAddress } from 'node:dns';
import ipaddr from 'ipaddr.js';
import { unmapped } from './addresses.ts';

type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;
type IpAddress = IPv4 | IPv6;

export type ExitDecision = { allowed: true } | { allowed: false; reason: string };

export interface ExitPolicy {
  /** Judges one IP address literal (dotted-quad IPv4 or IPv6 text, no zone id). */
  checkAddress(ip: string): ExitDecision;
  /** Judges a destination port: 1–65535, SMTP ports refused. */
  checkPort(port: number): ExitDecision;
}

export interface ExitPolicyOptions {
  /** CIDRs from `--allow-target`, e.g. '127.0.0.1/32' or 'fd00::/8'. */
  allowTargets?: string[];
}

export type TargetHost =
  | { kind: 'ip'; address: string }
  | { kind: 'name'; name: string }
  | { kind: 'invalid'; reason: string };

export type ResolvedTarget =
  | { ok: true; addresses: string[] }
  | { ok: false; code: 'target_forbidden' | 'target_unreachable'; reason: string };

/** The shape of `dns.promises.lookup` as `resolveTarget` calls it. */
export type LookupAll = (
  hostname: string,
  options: { all: true; verbatim: true },
) => Promise<LookupAddress[]>;

const SMTP_PORTS = new Set([25, 465, 587]);

/** Cloud metadata endpoints, refused with a specific reason (most also sit in a refused range). */
const METADATA_ADDRESSES: ReadonlyArray<readonly [IpAddress, string]> = [
  [ipaddr.parse('169.254.169.254'), 'cloud metadata service (AWS, GCP, Azure and others)'],
  [ipaddr.parse('100.100.100.200'), 'cloud metadata service (Alibaba Cloud)'],
  [ipaddr.parse('168.63.129.16'), 'cloud platform service (Azure WireServer)'],
  [ipaddr.parse('fd00:ec2::254'), 'cloud metadata service (AWS, IPv6)'],
];

/** Human wording for ipaddr.js range names; unknown names are shown as they are. */
const RANGE_WORDING: Readonly<Record<string, string>> = {
  unspecified: 'an unspecified ("this host") address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT (shared, 100.64.0.0/10) address',
  private: 'a private (RFC 1918) address',
  uniqueLocal: 'a private (unique local, fc00::/7) address',
  reserved: 'a reserved or documentation address',
  benchmarking: 'a benchmarking address',
  as112: 'an AS112 address',
  as112v6: 'an AS112 address',
  amt: 'an AMT relay address',
  rfc6145: 'an IPv4-translated (::ffff:0:0:0/96) address',
  deprecatedSiteLocal: 'a site-local address',
  discard: 'a discard-only address',
};

const WELL_KNOWN_NAT64 = ipaddr.IPv6.parse('64:ff9b::');
const LOCAL_USE_NAT64 = ipaddr.IPv6.parse('64:ff9b:1::');
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parse('2000::');

interface AllowRange {
  network: IpAddress;
  prefix: number;
}

const refuse = (reason: string): ExitDecision => ({ allowed: false, reason });
const ALLOWED: ExitDecision = Object.freeze({ allowed: true });

/**
 * Parses a strict IP literal: four-part decimal IPv4, or IPv6 text without a
 * zone id. Returns null for anything else (including legacy IPv4 spellings,
 * which `normalizeTargetHost` turns into canonical form first).
 *
 * IPv6 text goes through the WHATWG URL parser first because ipaddr.js 2.5
 * mis-parses the IPv4-compatible form: `ipaddr.parse('::127.0.0.1')` yields
 * ::ffff:7f00:1 (IPv4-mapped), a different address. The URL parser serialises
 * IPv6 as plain hex, which ipaddr.js then parses correctly.
 */
function parseIpLiteral(text: string): IpAddress | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(':')) return null;
  let hostname: string;
  try {
    hostname = new URL(`http://[${text}]/`).hostname;
  } catch {
    return null;
  }
  return ipaddr.IPv6.parse(hostname.slice(1, -1));
}

function canonical(address: IpAddress): string {
  return address.kind() === 'ipv6' ? (address as IPv6).toRFC5952String() : address.toString();
}

function ipv4FromWords(high: number, low: number): IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

const fullLength = (address: IpAddress): number => (address.kind() === 'ipv4' ? 32 : 128);
const sameFamily = (a: IpAddress, b: IpAddress): boolean => a.kind() === b.kind();

function allowTargetError(cidr: unknown, why: string): Error {
  return new Error(
    `invalid --allow-target ${JSON.stringify(cidr)}: ${why} (expected a CIDR such as 127.0.0.1/32 or fd00::/8)`,
  );
}

function parseAllowTarget(cidr: string): AllowRange {
  if (typeof cidr !== 'string') throw allowTargetError(cidr, 'not a string');
  const match = /^([^/]+)\/(0|[1-9]\d{0,2})$/.exec(cidr);
  if (!match) throw allowTargetError(cidr, 'not in address/prefix form');
  const [, addressText = '', prefixText = ''] = match;
  const address = parseIpLiteral(addressText);
  if (!address) {
    throw allowTargetError(cidr, `${JSON.stringify(addressText)} is not an IP address`);
  }
  const prefix = Number(prefixText);
  if (prefix > fullLength(address)) {
    throw allowTargetError(cidr, `prefix /${prefix} is longer than ${fullLength(address)} bits`);
  }
  // An IPv4-mapped IPv6 range is an IPv4 range (addresses are unwrapped before matching).
  if (address.kind() === 'ipv6' && (address as IPv6).isIPv4MappedAddress() && prefix >= 96) {
    return { network: (address as IPv6).toIPv4Address(), prefix: prefix - 96 };
  }
  return { network: address, prefix };
}

/** Returns why `address` is refused, or null when it is a public unicast address. */
function refusalReason(address: IpAddress): string | null {
  const text = canonical(address);
  for (const [metadata, service] of METADATA_ADDRESSES) {
    if (sameFamily(metadata, address) && address.match(metadata, fullLength(metadata))) {
      return `${text} is a ${service} address`;
    }
  }

  const range: string = address.range();
  if (address.kind() === 'ipv4') {
    if (range === 'unicast') return null;
    return `${text} is ${RANGE_WORDING[range] ?? `in the '${range}' range`}`;
  }

  const v6 = address as IPv6;
  const [w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0] = v6.parts;
  const judgeEmbedded = (form: string, embedded: IPv4): string | null => {
    const inner = refusalReason(embedded);
    return inner ? `${text} is ${form} embedding ${embedded.toString()}, and ${inner}` : null;
  };

  switch (range) {
    case 'ipv4Mapped':
      return judgeEmbedded('an IPv4-mapped address', v6.toIPv4Address());
    case 'rfc6052':
      if (v6.match(WELL_KNOWN_NAT64, 96)) {
        return judgeEmbedded('a NAT64 (64:ff9b::/96) address', ipv4FromWords(w6, w7));
      }
      if (v6.match(LOCAL_USE_NAT64, 48)) {
        // RFC 6052 allows NAT64 prefixes from /32 to /96, each putting the IPv4
        // address in a different place. Inside 64:ff9b:1::/48 only the /96 layout
        // (bits 48..95 zero) is unambiguous; anything else fails closed.
        if (w3 !== 0 || w4 !== 0 || w5 !== 0) {
          return `${text} is a local-use NAT64 (64:ff9b:1::/48) address whose embedded IPv4 address is ambiguous`;
        }
        return judgeEmbedded('a local-use NAT64 (64:ff9b:1::/48) address', ipv4FromWords(w6, w7));
      }
      return `${text} is in the '${range}' range`;
    case '6to4':
      return judgeEmbedded('a 6to4 (2002::/16) address', ipv4FromWords(w1, w2));
    case 'teredo':
      // Teredo: 2001:0:<server v4>:<flags>:<port ^ 0xffff>:<client v4 ^ 0xffffffff>.
      return judgeEmbedded('a Teredo (2001::/32) address', ipv4FromWords(w6 ^ 0xffff, w7 ^ 0xffff));
    case 'unicast':
      if (w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0 && w4 === 0 && w5 === 0) {
        // ::/96 minus :: and ::1 (classified above): deprecated IPv4-compatible form.
        return judgeEmbedded('an IPv4-compatible (::a.b.c.d) address', ipv4FromWords(w6, w7));
      }
      if (!v6.match(GLOBAL_UNICAST_V6, 3)) {
        return `${text} is outside IPv6 global unicast space (2000::/3)`;
      }
      return null;
    default:
      return `${text} is ${RANGE_WORDING[range] ?? `in the '${range}' range`}`;
  }
}

export function createExitPolicy(options: ExitPolicyOptions = {}): ExitPolicy {
  const allowRanges = (options.allowTargets ?? []).map(parseAllowTarget);

  const isAllowListed = (address: IpAddress): boolean =>
    allowRanges.some(
      (range) => sameFamily(range.network, address) && address.match(range.network, range.prefix),
    );

  return {
    checkAddress(ip: string): ExitDecision {
      const parsed = typeof ip === 'string' ? parseIpLiteral(ip) : null;
      if (!parsed) return refuse(`${JSON.stringify(ip)} is not an IP address literal`);
      // IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 destination itself: judged as IPv4.
      const address = unmapped(parsed);
      if (isAllowListed(address)) return ALLOWED;
      const reason = refusalReason(parsed);
      return reason ? refuse(reason) : ALLOWED;
    },

    checkPort(port: number): ExitDecision {
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        return refuse(`port ${String(port)} is not a valid destination port (1-65535)`);
      }
      if (SMTP_PORTS.has(port)) {
        return refuse(`port ${port} is an SMTP port; sending mail is refused`);
      }
      return ALLOWED;
    },
  };
}

/** Longest DNS name, without the trailing dot. */
const MAX_NAME_LENGTH = 253;
const NAME_LABEL = /^[a-z0-9_-]{1,63}$/;

/**
 * Turns a customer-supplied host into a canonical IP address, a lower-case DNS
 * name, or an invalid result.
 *
 * IPv4 addresses in disguise (2130706433, 0x7f.1, 127.1, 017700000001,
 * 0177.0.0.1, 127.0.0.1.) are decoded the way browsers and curl do it, using the
 * WHATWG URL host parser: a host whose last label is a number is an IPv4
 * address or nothing. Bracketed or bare IPv6 goes through the same parser (zone
 * ids refused). Only ASCII letters, digits, '.', '-' and '_' are passed to it:
 * the URL parser would otherwise silently strip CR/LF/tab, percent-decode,
 * map full-width digits, or treat '@', ':' and '/' as URL syntax.
 */
export function normalizeTargetHost(host: string): TargetHost {
  if (typeof host !== 'string' || host.length === 0) {
    return { kind: 'invalid', reason: 'empty host' };
  }
  if (host.length > MAX_NAME_LENGTH + 1) {
    return { kind: 'invalid', reason: `host is longer than ${MAX_NAME_LENGTH} characters` };
  }

  const bracketed = host.startsWith('[') && host.endsWith(']');
  if (bracketed || host.includes(':')) {
    const inner = bracketed ? host.slice(1, -1) : host;
    const address = parseIpLiteral(inner);
    if (address?.kind() !== 'ipv6') {
      return { kind: 'invalid', reason: `${JSON.stringify(host)} is not a valid IPv6 address` };
    }
    return { kind: 'ip', address: canonical(address) };
  }

  if (!/^[A-Za-z0-9._-]+$/.test(host)) {
    return {
      kind: 'invalid',
      reason: `${JSON.stringify(host)} contains characters not allowed in a host name`,
    };
  }

  let hostname: string;
  try {
    hostname = new URL(`http://${host}/`).hostname;
  } catch {
    return {
      kind: 'invalid',
      reason: `${JSON.stringify(host)} is not a valid host name or IPv4 address`,
    };
  }

  if (ipaddr.IPv4.isValidFourPartDecimal(hostname)) {
    return { kind: 'ip', address: ipaddr.IPv4.parse(hostname).toString() };
  }

  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    return { kind: 'invalid', reason: `${JSON.stringify(host)} is not a valid DNS name length` };
  }
  if (!name.split('.').every((label) => NAME_LABEL.test(label))) {
    return {
      kind: 'invalid',
      reason: `${JSON.stringify(host)} has an empty or over-long (more than 63 characters) label`,
    };
  }
  return { kind: 'name', name };
}

function errorCode(error: unknown): string {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Normalises `host`, checks `port`, resolves names once and checks EVERY
 * resolved address. The caller must connect only to the returned `addresses`
 * and never resolve the name again: a second lookup could answer differently
 * (DNS rebinding) and bypass the check. If any address of a name is forbidden
 * the whole target is refused, since a name mixing public and private answers
 * is a rebinding trick.
 *
 * Invalid hosts and forbidden ports or addresses give `target_forbidden`; DNS
 * failures (ENOTFOUND, EAI_AGAIN, ...) and empty answers give
 * `target_unreachable`. The port is checked before any DNS query is made.
 */
export async function resolveTarget(
  host: string,
  port: number,
  policy: ExitPolicy,
  lookup: LookupAll = dnsPromises.lookup,
): Promise<ResolvedTarget> {
  const target = normalizeTargetHost(host);
  if (target.kind === 'invalid') {
    return { ok: false, code: 'target_forbidden', reason: `invalid host: ${target.reason}` };
  }

  const portDecision = policy.checkPort(port);
  if (!portDecision.allowed) {
    return { ok: false, code: 'target_forbidden', reason: portDecision.reason };
  }

  let candidates: string[];
  if (target.kind === 'ip') {
    candidates = [target.address];
  } else {
    let answers: LookupAddress[];
    try {
      answers = await lookup(target.name, { all: true, verbatim: true });
    } catch (error) {
      return {
        ok: false,
        code: 'target_unreachable',
        reason: `DNS lookup of ${target.name} failed: ${errorCode(error)}`,
      };
    }
    if (!Array.isArray(answers) || answers.length === 0) {
      return {
        ok: false,
        code: 'target_unreachable',
        reason: `DNS lookup of ${target.name} returned no addresses`,
      };
    }
    candidates = answers.map((answer) => answer.address);
  }

  const addresses: string[] = [];
  for (const candidate of candidates) {
    const decision = policy.checkAddress(candidate);
    if (!decision.allowed) {
      const via = target.kind === 'name' ? ` (${target.name} resolved to it)` : '';
      return { ok: false, code: 'target_forbidden', reason: `${decision.reason}${via}` };
    }
    const parsed = parseIpLiteral(candidate);
    const text = parsed ? canonical(parsed) : candidate;
    if (!addresses.includes(text)) addresses.push(text);
  }
  return { ok: true, addresses };
}
