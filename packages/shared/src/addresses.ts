import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The one place an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack socket
 * reports an IPv4 peer) becomes the IPv4 address it carries, for comparing and dialling.
 */

/** The address, IPv4 when it is IPv4-mapped. Null when the text is not an IP address in Node's strict sense (no `127.1`, no hex). */
export function plainAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (isIP(text) === 0) return null;
  return ipaddr.process(text);
}

/** The text of a resolved destination to dial: `::ffff:a.b.c.d` is `a.b.c.d`; anything else as it is. */
export function plainDestination(text: string): string {
  return plainAddress(text)?.toString() ?? text;
}

/** A parsed address, IPv4 when it is IPv4-mapped. */
export function unmapped(address: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    return (address as ipaddr.IPv6).toIPv4Address();
  }
  return address;
}
