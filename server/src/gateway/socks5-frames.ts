/**
 * The SOCKS5 wire format (RFC 1928 with the RFC 1929 username/password
 * sub-negotiation) as pure functions over a buffer: each parser looks at the bytes
 * received so far and says "incomplete", "here is a frame of `size` bytes", "not
 * this protocol" or (for the request) "answer with this REP byte". No I/O, no state:
 * the connection state machine in socks5.ts owns the buffer and the socket.
 */
import ipaddr from 'ipaddr.js';
import { PROXY_ERRORS, type ProxyErrorCode } from '../errors/index.ts';

export const SOCKS_VERSION = 0x05;
/** RFC 1929 sub-negotiation version. */
export const AUTH_VERSION = 0x01;
/** "No authentication required": accepted only from a key's password-less ranges. */
export const METHOD_NO_AUTHENTICATION = 0x00;
export const METHOD_USERNAME_PASSWORD = 0x02;
export const METHOD_NO_ACCEPTABLE = 0xff;

const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** RFC 1928 REP values this module writes itself (the catalogue supplies the rest). */
export const REP_SUCCEEDED = 0x00;
export const REP_GENERAL_FAILURE = 0x01;
export const REP_NOT_ALLOWED = 0x02;
export const REP_COMMAND_NOT_SUPPORTED = 0x07;
export const REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08;

export interface SocksTarget {
  /** Dotted IPv4, RFC 5952 IPv6 (`::1`), or the domain exactly as sent (not resolved). */
  host: string;
  port: number;
  addressType: 'ipv4' | 'ipv6' | 'domain';
}

export interface Greeting {
  /** Whether METHODS holds 0x02, the method everyone may use. */
  offersUsernamePassword: boolean;
  /** Whether METHODS holds 0x00 (Chromium offers nothing else). */
  offersNoAuthentication: boolean;
}

export interface Credentials {
  username: string;
  password: string;
}

export type Parsed<T> =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'frame'; readonly value: T; readonly size: number }
  /** Not a frame of this protocol (wrong version byte): close without a reply. */
  | { readonly kind: 'invalid'; readonly reason: string }
  /** A well-formed request we will not serve: answer with this REP byte. */
  | { readonly kind: 'refused'; readonly rep: number; readonly reason: string };

const INCOMPLETE = { kind: 'incomplete' } as const;

function invalid(reason: string): Parsed<never> {
  return { kind: 'invalid', reason };
}

function refused(rep: number, reason: string): Parsed<never> {
  return { kind: 'refused', rep, reason };
}

/** `VER NMETHODS METHODS...` (RFC 1928 section 3). NMETHODS 0 is a frame offering nothing. */
export function parseGreeting(buffer: Buffer): Parsed<Greeting> {
  if (buffer.length < 1) return INCOMPLETE;
  // Checked on the first byte so that SOCKS4, HTTP or TLS is dropped at once.
  if (buffer[0] !== SOCKS_VERSION) return invalid(`greeting version 0x${hex(buffer[0])}`);
  if (buffer.length < 2) return INCOMPLETE;
  const count = buffer[1] as number;
  const size = 2 + count;
  if (buffer.length < size) return INCOMPLETE;
  const methods = buffer.subarray(2, size);
  return {
    kind: 'frame',
    value: {
      offersUsernamePassword: methods.includes(METHOD_USERNAME_PASSWORD),
      offersNoAuthentication: methods.includes(METHOD_NO_AUTHENTICATION),
    },
    size,
  };
}

/**
 * `VER ULEN UNAME PLEN PASSWD` (RFC 1929). Lengths 0 are returned as empty strings:
 * the caller decides (an empty password is how IP allow-list keys authenticate).
 */
export function parseCredentials(buffer: Buffer): Parsed<Credentials> {
  if (buffer.length < 1) return INCOMPLETE;
  if (buffer[0] !== AUTH_VERSION) return invalid(`auth version 0x${hex(buffer[0])}`);
  if (buffer.length < 2) return INCOMPLETE;
  const userEnd = 2 + (buffer[1] as number);
  if (buffer.length < userEnd + 1) return INCOMPLETE;
  const size = userEnd + 1 + (buffer[userEnd] as number);
  if (buffer.length < size) return INCOMPLETE;
  return {
    kind: 'frame',
    value: {
      username: buffer.toString('utf8', 2, userEnd),
      password: buffer.toString('utf8', userEnd + 1, size),
    },
    size,
  };
}

/**
 * `VER CMD RSV ATYP DST.ADDR DST.PORT` (RFC 1928 section 4). The whole frame is read
 * before a refusal so the client is not reset with its own bytes unread, except for an
 * unknown ATYP, whose length cannot be known. RSV is not checked (RFC 1928 reserves it;
 * being strict would only break sloppy clients).
 */
export function parseRequest(buffer: Buffer): Parsed<SocksTarget> {
  if (buffer.length < 1) return INCOMPLETE;
  if (buffer[0] !== SOCKS_VERSION) return invalid(`request version 0x${hex(buffer[0])}`);
  if (buffer.length < 4) return INCOMPLETE;
  const command = buffer[1] as number;
  const atyp = buffer[3] as number;
  let addressEnd: number;
  switch (atyp) {
    case ATYP_IPV4:
      addressEnd = 4 + 4;
      break;
    case ATYP_IPV6:
      addressEnd = 4 + 16;
      break;
    case ATYP_DOMAIN:
      if (buffer.length < 5) return INCOMPLETE;
      addressEnd = 5 + (buffer[4] as number);
      break;
    default:
      return refused(REP_ADDRESS_TYPE_NOT_SUPPORTED, `address type 0x${hex(atyp)}`);
  }
  const size = addressEnd + 2;
  if (buffer.length < size) return INCOMPLETE;
  // BIND (0x02), UDP ASSOCIATE (0x03) and anything else: only CONNECT is served.
  if (command !== CMD_CONNECT) {
    return refused(REP_COMMAND_NOT_SUPPORTED, `command 0x${hex(command)}`);
  }
  const port = buffer.readUInt16BE(addressEnd);
  let target: SocksTarget;
  if (atyp === ATYP_DOMAIN) {
    const host = decodeDomain(buffer.subarray(5, addressEnd));
    // Like a name that does not resolve: the catalogue's DNS-failure code.
    if (host === null) return refused(catalogueRep('target_unreachable'), 'malformed domain');
    target = { host, port, addressType: 'domain' };
  } else {
    const bytes = [...buffer.subarray(4, addressEnd)];
    const host = ipaddr.fromByteArray(bytes).toString();
    target = { host, port, addressType: atyp === ATYP_IPV4 ? 'ipv4' : 'ipv6' };
  }
  // Port 0 cannot be connected to: refused like a blocked port.
  if (port === 0) return refused(catalogueRep('target_forbidden'), 'port 0');
  return { kind: 'frame', value: target, size };
}

/** The REP byte the catalogue gives a code (both codes used here have one). */
function catalogueRep(code: ProxyErrorCode): number {
  const socks = PROXY_ERRORS[code].socks;
  return typeof socks === 'number' ? socks : REP_NOT_ALLOWED;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A domain of 1-255 bytes of valid UTF-8 with no space or control character; null
 * otherwise. Whether the name is allowed or resolves is the caller's business; this
 * only keeps bytes that no resolver accepts (NUL, CR/LF) out of the rest of the system.
 */
function decodeDomain(bytes: Buffer): string | null {
  if (bytes.length === 0) return null;
  for (const byte of bytes) if (byte <= 0x20 || byte === 0x7f) return null;
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** `VER METHOD`: the method we chose, or 0xFF. */
export function methodReply(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

/** RFC 1929 status: 0x00 success, anything else failure (we send 0x01). */
export function authReply(success: boolean): Buffer {
  return Buffer.from([AUTH_VERSION, success ? 0x00 : 0x01]);
}

/**
 * `VER REP RSV ATYP BND.ADDR BND.PORT` with BND = 0.0.0.0:0. The bound address is the
 * exit node's socket, on another machine, and CONNECT clients do not use it (RFC 1928
 * only needs it for BIND, which we refuse); a fixed IPv4 zero keeps the reply 10 bytes
 * and reveals nothing about the gateway.
 */
export function reply(rep: number): Buffer {
  return Buffer.from([SOCKS_VERSION, rep, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

function hex(byte: number | undefined): string {
  return (byte ?? 0).toString(16).padStart(2, '0');
}
