/**
 * `host:port` text as used in a CONNECT stream's :authority and in the agent's
 * `--hub` option. IPv6 literals are bracketed; names are checked for syntax only
 * (whether they resolve, and to what, is the exit policy's business).
 */
import { isIP, isIPv6 } from 'node:net';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const PORT = /^[0-9]{1,5}$/;

/** A DNS name (letters, digits, `-`, `_`, dot-separated labels) or an IP literal. */
export function isValidHost(host: string): boolean {
  if (isIP(host) !== 0) return !host.includes('%');
  if (host.length === 0 || host.length > 253) return false;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  return name.split('.').every((label) => LABEL.test(label));
}

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65_535;
}

export function formatAuthority(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses `host:port` or `[v6]:port`; null when either part is malformed. */
export function parseAuthority(text: string): HostPort | null {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIPv6(host)) return null;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return null;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    // A bare IPv6 literal would split at its last colon: refuse it rather than guess.
    if (host.includes(':')) return null;
  }
  if (!PORT.test(portText)) return null;
  const port = Number(portText);
  if (!isValidPort(port) || !isValidHost(host)) return null;
  return { host, port };
}
