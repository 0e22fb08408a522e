/**
 * One database file, read for lookups: an MMDB file (MaxMind's format, which DB-IP and
 * ip-location-db publish too) through the `maxmind` reader, or an ASN range list in
 * ip-location-db's CSV form (`start,end,asn,organization`), the only ASN database on
 * npm. Every table says which address families it can hold, so that an IPv6 address is
 * never looked up in an IPv4-only file (the reader would walk its tree and answer a
 * wrong place rather than nothing).
 */
import { readFile } from 'node:fs/promises';
import ipaddr from 'ipaddr.js';
import { open as openMmdb } from 'maxmind';

export type Address = ipaddr.IPv4 | ipaddr.IPv6;

export interface AddressTable {
  holds(family: 4 | 6): boolean;
  /** The record for the address, or null when the file has none. */
  get(address: Address): Readonly<Record<string, unknown>> | null;
}

/** Reads a file whole; throws with a one-line reason when it is not a table of either form. */
export async function loadAddressTable(file: string): Promise<AddressTable> {
  if (file.toLowerCase().endsWith('.csv')) return asnCsvTable(await readFile(file, 'utf8'));
  const reader = await openMmdb<Record<string, unknown>>(file);
  const version = reader.metadata.ipVersion;
  return {
    // An IPv6 tree also holds IPv4 (the reader looks it up under ::/96).
    holds: (family) => family === 4 || version === 6,
    get: (address) => reader.get(address.toString()),
  };
}

/*
 * ASN ranges in address order, kept as typed arrays (some 400,000 IPv4 rows: 6 MB instead
 * of 60 MB of objects) and found by binary search. IPv6 rows are kept by their first 64
 * bits: routed prefixes are never longer than /64, so nothing is lost.
 */
function asnCsvTable(text: string): AddressTable {
  return rangeTable(parseAsnCsv(text));
}

interface AsnRanges {
  family: 4 | 6;
  starts: Float64Array | BigUint64Array;
  ends: Float64Array | BigUint64Array;
  asns: Uint32Array;
  organizationOf: Uint32Array;
  organizations: string[];
}

/*
 * Parsing is apart from the table so that the lookup's closure holds the arrays only, not
 * the parser's scope (its name index). Every organization name is copied out of the file's
 * text: a slice of it would keep the whole 20 MB text alive (27 MB of heap for the
 * packaged IPv4 file, measured on 2026-12-06).
 */
function parseAsnCsv(text: string): AsnRanges {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const first = lines[0] ?? '';
  const family: 4 | 6 = first.slice(0, first.indexOf(',')).includes(':') ? 6 : 4;
  const starts = family === 4 ? new Float64Array(lines.length) : new BigUint64Array(lines.length);
  const ends = family === 4 ? new Float64Array(lines.length) : new BigUint64Array(lines.length);
  const asns = new Uint32Array(lines.length);
  const organizationOf = new Uint32Array(lines.length);
  const organizations: string[] = [];
  const organizationIndex = new Map<string, number>();
  const key = family === 4 ? ipv4Number : ipv6High64;

  lines.forEach((line, row) => {
    const a = line.indexOf(',');
    const b = line.indexOf(',', a + 1);
    const c = line.indexOf(',', b + 1);
    const start = c > 0 ? key(line.slice(0, a)) : null;
    const end = c > 0 ? key(line.slice(a + 1, b)) : null;
    const asn = Number(line.slice(b + 1, c));
    if (start === null || end === null || !Number.isInteger(asn) || asn < 0 || end < start) {
      throw new Error(`line ${row + 1} is not "start,end,asn,organization"`);
    }
    if (row > 0 && start < (starts[row - 1] as number | bigint)) {
      throw new Error(`line ${row + 1} is out of address order`);
    }
    starts[row] = start as never;
    ends[row] = end as never;
    asns[row] = asn;
    const organization = unquote(line.slice(c + 1).replace(/\r$/, ''));
    let index = organizationIndex.get(organization);
    if (index === undefined) {
      index = organizations.length;
      organizations.push(Buffer.from(organization, 'utf8').toString('utf8'));
      organizationIndex.set(organization, index);
    }
    organizationOf[row] = index;
  });
  return { family, starts, ends, asns, organizationOf, organizations };
}

function rangeTable({
  family,
  starts,
  ends,
  asns,
  organizationOf,
  organizations,
}: AsnRanges): AddressTable {
  return {
    holds: (wanted) => wanted === family,
    get(address) {
      const value = family === 4 ? ipv4Value(address) : ipv6Value(address);
      // The last row starting at or before the address.
      let low = 0;
      let high = starts.length - 1;
      let found = -1;
      while (low <= high) {
        const middle = (low + high) >>> 1;
        if ((starts[middle] as number | bigint) <= value) {
          found = middle;
          low = middle + 1;
        } else {
          high = middle - 1;
        }
      }
      if (found < 0 || (ends[found] as number | bigint) < value) return null;
      const asn = asns[found] as number;
      if (asn === 0) return null; // ip-location-db's "not routed"
      return {
        autonomous_system_number: asn,
        autonomous_system_organization: organizations[organizationOf[found] as number],
      };
    },
  };
}

function ipv4Value(address: Address): number {
  return (address as ipaddr.IPv4).octets.reduce((sum, octet) => sum * 256 + octet, 0);
}

function ipv6Value(address: Address): bigint {
  const { parts } = address as ipaddr.IPv6;
  let value = 0n;
  for (let i = 0; i < 4; i++) value = (value << 16n) | BigInt(parts[i] as number);
  return value;
}

/** `1.2.3.4` or its number (`16909060`, the `-num` files). */
function ipv4Number(text: string): number | null {
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    return value <= 0xffffffff ? value : null;
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
  return ipv4Value(ipaddr.IPv4.parse(text));
}

function ipv6High64(text: string): bigint | null {
  return ipaddr.IPv6.isValid(text) ? ipv6Value(ipaddr.IPv6.parse(text)) : null;
}

function unquote(field: string): string {
  return field.startsWith('"') && field.endsWith('"')
    ? field.slice(1, -1).replaceAll('""', '"')
    : field;
}
