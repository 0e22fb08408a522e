import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * An IP address as it is compared and dialled: an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4 peer) is the IPv4 address.
 * Null when the text is not an IP address in Node's strict sense (no `127.1`, no hex).
 */
export function plainAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (isIP(text) === 0) return null;
  return ipaddr.process(text);
}
