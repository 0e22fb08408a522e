/**
 * The PROXY protocol (HAProxy's, versions 1 and 2) on the customer-facing ports (and on
 * the hub's, where exit IPs are proven by the address a connection comes from): behind
 * a TCP balancer every client would otherwise look like the balancer, so per-address
 * limits (failed sign-ins) would lock every customer out at once and password-less
 * address ranges would admit everyone or no one. Only the balancers named by
 * PROXY_PROTOCOL_FROM may send the header, and from them it is required: anybody else
 * sending one is just a client whose first bytes are not HTTP or SOCKS5 (refused there),
 * so no client can claim another's address.
 *
 * Parsed here rather than with a library: the parsers on npm take a whole header and do
 * not say where it ends in a stream, which is the part that matters (the bytes after it
 * are the client's and must reach the HTTP or SOCKS5 parser untouched), and the header
 * is untrusted input read before anything else.
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */
import { BlockList, isIP, type Server, type Socket } from 'node:net';
import { type TLSSocket, Server as TlsServer } from 'node:tls';
import { plainAddress } from '@ipcola/shared/addresses';
import ipaddr from 'ipaddr.js';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V1_PREFIX = Buffer.from('PROXY ');
/** Version 1's longest line, CRLF included (section 2.1). */
const V1_MAX = 107;
/**
 * Above what balancers send (addresses and TLVs: HAProxy's SSL and unique-id ones stay
 * well under 1 KB), bounding what is buffered before the client's first byte.
 */
const V2_MAX = 16 + 2048;

export type ProxyHeader =
  | { readonly state: 'incomplete' }
  | { readonly state: 'invalid'; readonly reason: string }
  | {
      readonly state: 'complete';
      /** Bytes the header took: what follows is the client's. */
      readonly length: number;
      /** The client, or null when the balancer speaks for itself (LOCAL, UNKNOWN). */
      readonly source: { readonly address: string; readonly port: number } | null;
    };

/** Reads a PROXY header at the start of `data`, or says it needs more bytes or is not one. */
export function parseProxyHeader(data: Buffer): ProxyHeader {
  if (startsWith(data, V2_SIGNATURE)) return parseV2(data);
  if (startsWith(data, V1_PREFIX)) return parseV1(data);
  if (startsWith(V2_SIGNATURE, data) || startsWith(V1_PREFIX, data)) return { state: 'incomplete' };
  return { state: 'invalid', reason: 'no PROXY protocol header' };
}

function startsWith(data: Buffer, prefix: Buffer): boolean {
  return data.length >= prefix.length && data.subarray(0, prefix.length).equals(prefix);
}

function parseV1(data: Buffer): ProxyHeader {
  const end = data.indexOf('\r\n');
  if (end < 0) {
    return data.length >= V1_MAX
      ? { state: 'invalid', reason: 'PROXY line longer than 107 bytes' }
      : { state: 'incomplete' };
  }
  if (end + 2 > V1_MAX) return { state: 'invalid', reason: 'PROXY line longer than 107 bytes' };
  const fields = data.subarray(0, end).toString('latin1').split(' ');
  const length = end + 2;
  if (fields[1] === 'UNKNOWN') return { state: 'complete', length, source: null };
  if (fields.length !== 6) return { state: 'invalid', reason: 'PROXY line has not 6 fields' };
  const [, family, source, destination, sourcePort, destinationPort] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const expected = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0;
  if (expected === 0) return { state: 'invalid', reason: `PROXY family ${family}` };
  if (isIP(source) !== expected || isIP(destination) !== expected) {
    return { state: 'invalid', reason: 'PROXY addresses do not match their family' };
  }
  const port = v1Port(sourcePort);
  if (port === null || v1Port(destinationPort) === null) {
    return { state: 'invalid', reason: 'PROXY ports are not 0-65535' };
  }
  return { state: 'complete', length, source: { address: source, port } };
}

/** A decimal port without leading zeros (section 2.1). */
function v1Port(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

function parseV2(data: Buffer): ProxyHeader {
  if (data.length < 16) return { state: 'incomplete' };
  const versionCommand = data[12] as number;
  const familyTransport = data[13] as number;
  const length = 16 + data.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return { state: 'invalid', reason: 'PROXY version is not 2' };
  if (length > V2_MAX) return { state: 'invalid', reason: 'PROXY header too long' };
  if (data.length < length) return { state: 'incomplete' };
  const command = versionCommand & 0x0f;
  if (command === 0x0) return { state: 'complete', length, source: null };
  if (command !== 0x1) return { state: 'invalid', reason: 'PROXY command unknown' };
  const family = familyTransport >> 4;
  const transport = familyTransport & 0x0f;
  // UNSPEC and UNIX carry no client address we could use.
  if (family === 0x0 || family === 0x3) return { state: 'complete', length, source: null };
  if (transport !== 0x1) return { state: 'invalid', reason: 'PROXY transport is not a stream' };
  const bytes = family === 0x1 ? 4 : family === 0x2 ? 16 : 0;
  if (bytes === 0) return { state: 'invalid', reason: 'PROXY address family unknown' };
  if (length < 16 + 2 * bytes + 4) {
    return { state: 'invalid', reason: 'PROXY header shorter than its addresses' };
  }
  const address = ipaddr.fromByteArray([...data.subarray(16, 16 + bytes)]).toString();
  const port = data.readUInt16BE(16 + 2 * bytes);
  return { state: 'complete', length, source: { address, port } };
}

export interface ProxyProtocolOptions {
  /** CIDRs of the balancers that send the header (PROXY_PROTOCOL_FROM). */
  readonly from: readonly string[];
  /** A balancer's connection that has not sent its header by then is closed. */
  readonly timeoutMs: number;
  /** Told of each connection closed for a missing or bad header. */
  readonly onRefused?: (reason: string, peer: string | undefined) => void;
}

const headerLengths = new WeakMap<Socket, number>();

/** Bytes of a PROXY header read from the socket: the balancer's, not the customer's. */
export function proxyHeaderLength(socket: Socket): number {
  return headerLengths.get(socket) ?? 0;
}

/**
 * Makes `server` read a PROXY header from the balancers' connections before its own
 * connection handling sees them, and give their client's address as the socket's
 * remoteAddress and remotePort. Call once every 'connection' listener of the server is
 * in place (they are moved behind the header).
 */
export function acceptProxyProtocol(server: Server, options: ProxyProtocolOptions): void {
  if (options.from.length === 0) return;
  const balancers = new BlockList();
  for (const cidr of options.from) {
    const [network, prefix] = cidr.split('/') as [string, string];
    balancers.addSubnet(network, Number(prefix), isIP(network) === 6 ? 'ipv6' : 'ipv4');
  }
  const fromBalancer = (address: string | undefined) => {
    const plain = address === undefined ? null : plainAddress(address);
    if (!plain) return false;
    return balancers.check(plain.toString(), plain.kind() === 'ipv6' ? 'ipv6' : 'ipv4');
  };
  const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (!fromBalancer(socket.remoteAddress)) {
      for (const handler of handlers) handler.call(server, socket);
      return;
    }
    // A callback, not a promise: the server's handlers attach their 'error' listeners in
    // the same tick as ours come off, so that no error can fall between them.
    readHeader(socket, options.timeoutMs, (outcome) => {
      if (outcome instanceof Error) {
        options.onRefused?.(outcome.message, socket.remoteAddress);
        socket.destroy();
        return;
      }
      headerLengths.set(socket, outcome.length);
      if (outcome.source) {
        sources.set(socket, outcome.source);
        claimAddress(socket, outcome.source);
      }
      for (const handler of handlers) handler.call(server, socket);
    });
  });
  // A TLS server's sockets are TLSSockets over the TCP one, whose address they read from
  // the connection itself (the balancer): they are given the client too, before the
  // server's own handler (HTTP over TLS: the hub with a certificate) sees them.
  if (server instanceof TlsServer) {
    server.prependListener('secureConnection', (secure: TLSSocket) => {
      const source = sources.get((secure as TLSSocket & { _parent?: Socket })._parent as Socket);
      if (source) claimAddress(secure, source);
    });
  }
}

/** The client a balancer's header named, per TCP socket. */
const sources = new WeakMap<Socket, { address: string; port: number }>();

/**
 * Own properties over net.Socket's getters: every later reader (limits, password-less
 * ranges, exit-IP proofs, logs) sees the client.
 */
function claimAddress(socket: Socket, { address, port }: { address: string; port: number }) {
  Object.defineProperty(socket, 'remoteAddress', { value: address });
  Object.defineProperty(socket, 'remotePort', { value: port });
  Object.defineProperty(socket, 'remoteFamily', { value: isIP(address) === 6 ? 'IPv6' : 'IPv4' });
}

type HeaderOutcome = Error | { length: number; source: { address: string; port: number } | null };

/** Reads the header and calls back once, with the bytes after it put back into the socket. */
function readHeader(socket: Socket, timeoutMs: number, done: (outcome: HeaderOutcome) => void) {
  let buffered = Buffer.alloc(0);
  const finish = (outcome: HeaderOutcome) => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('error', onEnd);
    done(outcome);
  };
  const timer = setTimeout(() => finish(new Error('no PROXY header in time')), timeoutMs);
  const onEnd = () => finish(new Error('the connection closed before its PROXY header'));
  const onReadable = () => {
    for (let chunk = socket.read() as Buffer | null; chunk; chunk = socket.read()) {
      buffered = Buffer.concat([buffered, chunk]);
      const header = parseProxyHeader(buffered);
      if (header.state === 'incomplete') continue;
      if (header.state === 'invalid') {
        finish(new Error(header.reason));
        return;
      }
      const rest = buffered.subarray(header.length);
      if (rest.length > 0) socket.unshift(rest);
      finish({ length: header.length, source: header.source });
      return;
    }
  };
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
  socket.once('error', onEnd);
}
