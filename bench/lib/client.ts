/**
 * The load generator: raw TCP sockets speaking just enough HTTP/1.1, CONNECT and SOCKS5.
 *
 * Why not undici: on the one core the load generator shares with the target, undici's
 * per-request cost (~10x this) would make the client, not the proxy, the bottleneck for
 * the faster subjects. Requests here are prebuilt buffers and responses are parsed only
 * as far as status, Content-Length and end of body, so the same code drives every
 * subject (direct, forwarding, inside CONNECT or SOCKS5 tunnels) at the same cost.
 */
import { connect, type Socket } from 'node:net';

export interface Endpoint {
  host: string;
  port: number;
}

/** What a measurement goes through. */
export interface Subject {
  /** Short name used in tables and JSON: direct, ipcola, ipcola-socks, squid, proxy-chain. */
  name: string;
  kind: 'direct' | 'http' | 'socks';
  /** The proxy (unused for direct). */
  proxy?: Endpoint;
  auth?: { username: string; password: string };
}

export const REQUEST_TIMEOUT_MS = 15_000;
const HEADER_END = Buffer.from('\r\n\r\n');

function basic(auth: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
}

/**
 * The request for `path` on `origin` as this subject sends it on an established
 * connection: absolute-form with Proxy-Authorization for an HTTP proxy forwarding plain
 * HTTP (`forward`), origin-form otherwise (direct, or inside a tunnel).
 */
export function buildRequest(
  subject: Subject,
  origin: Endpoint,
  path: string,
  options: { forward: boolean; close?: boolean },
): Buffer {
  const authority = `${origin.host}:${origin.port}`;
  const forward = options.forward && subject.kind === 'http';
  const lines = [
    `GET ${forward ? `http://${authority}${path}` : path} HTTP/1.1`,
    `Host: ${authority}`,
    'User-Agent: ipcola-bench',
  ];
  if (forward && subject.auth) lines.push(`Proxy-Authorization: ${basic(subject.auth)}`);
  if (options.close) lines.push('Connection: close');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

export function openTcp(endpoint: Endpoint, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: endpoint.host, port: endpoint.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${endpoint.host}:${endpoint.port} timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once('error', onError);
  });
}

/** Reads a socket's bytes on demand during a handshake, then hands the socket back. */
class HandshakeReader {
  #buf: Buffer = Buffer.alloc(0);
  #want: { test: (buf: Buffer) => number; resolve: (b: Buffer) => void } | null = null;
  #fail: ((error: Error) => void) | null = null;
  readonly #onData = (chunk: Buffer) => {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    this.#check();
  };
  readonly #onEnd = () => this.#fail?.(new Error('connection closed during the handshake'));
  readonly #onError = (error: Error) => this.#fail?.(error);

  constructor(private readonly socket: Socket) {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
  }

  #check(): void {
    if (!this.#want) return;
    const n = this.#want.test(this.#buf);
    if (n < 0) return;
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    const { resolve } = this.#want;
    this.#want = null;
    this.#fail = null;
    resolve(out);
  }

  #read(test: (buf: Buffer) => number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#want = { test, resolve };
      this.#fail = (error) => {
        this.#want = null;
        this.#fail = null;
        reject(error);
      };
      this.#check();
    });
  }

  exactly(n: number): Promise<Buffer> {
    return this.#read((buf) => (buf.length >= n ? n : -1));
  }

  headers(): Promise<Buffer> {
    return this.#read((buf) => {
      const end = buf.indexOf(HEADER_END);
      if (end < 0 && buf.length > 64 * 1024) return buf.length; // let the caller fail on it
      return end < 0 ? -1 : end + 4;
    });
  }

  /** Detaches; returns the socket with any bytes read too far put back. */
  release(): Socket {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onEnd);
    this.socket.off('error', this.#onError);
    if (this.#buf.length > 0) this.socket.unshift(this.#buf);
    return this.socket;
  }
}

async function withTimeout<T>(socket: Socket, work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${what} timed out`));
    }, REQUEST_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An HTTP CONNECT tunnel to origin through an HTTP proxy; rejects unless the proxy says 200. */
async function httpConnect(subject: Subject, origin: Endpoint): Promise<Socket> {
  const socket = await openTcp(subject.proxy as Endpoint);
  const reader = new HandshakeReader(socket);
  const authority = `${origin.host}:${origin.port}`;
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (subject.auth) lines.push(`Proxy-Authorization: ${basic(subject.auth)}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  try {
    const head = await withTimeout(socket, reader.headers(), 'CONNECT');
    const status = head.toString('latin1', 9, 12);
    if (status !== '200') {
      throw new Error(`CONNECT answered ${head.toString('latin1').split('\r\n')[0]}`);
    }
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return reader.release();
}

const SOCKS_REPLIES = [
  'succeeded',
  'general failure',
  'not allowed by ruleset',
  'network unreachable',
  'host unreachable',
  'connection refused',
  'TTL expired',
  'command not supported',
  'address type not supported',
];

/** A SOCKS5 CONNECT to an IPv4 origin, with username/password authentication when given. */
async function socksConnect(subject: Subject, origin: Endpoint): Promise<Socket> {
  const socket = await openTcp(subject.proxy as Endpoint);
  const reader = new HandshakeReader(socket);
  const handshake = async () => {
    const method = subject.auth ? 0x02 : 0x00;
    socket.write(Buffer.from([0x05, 0x01, method]));
    const choice = await reader.exactly(2);
    if (choice[0] !== 0x05 || choice[1] !== method) throw new Error('SOCKS5 method refused');
    if (subject.auth) {
      const user = Buffer.from(subject.auth.username);
      const pass = Buffer.from(subject.auth.password);
      socket.write(
        Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([pass.length]), pass]),
      );
      const status = await reader.exactly(2);
      if (status[1] !== 0x00) throw new Error('SOCKS5 authentication failed');
    }
    const ip = origin.host.split('.').map(Number);
    const port = Buffer.alloc(2);
    port.writeUInt16BE(origin.port);
    socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x01, ...ip]), port]));
    const reply = await reader.exactly(4);
    if (reply[1] !== 0x00) {
      throw new Error(`SOCKS5 CONNECT: ${SOCKS_REPLIES[reply[1] ?? 1] ?? reply[1]}`);
    }
    // The bound address that follows: IPv4 + port, IPv6 + port, or length-prefixed name + port.
    if (reply[3] === 0x01) await reader.exactly(6);
    else if (reply[3] === 0x04) await reader.exactly(18);
    else await reader.exactly(((await reader.exactly(1))[0] ?? 0) + 2);
  };
  try {
    await withTimeout(socket, handshake(), 'SOCKS5 handshake');
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return reader.release();
}

/**
 * A byte stream to origin through the subject: a TCP connection (direct), a CONNECT
 * tunnel (HTTP proxy) or a SOCKS5 tunnel.
 */
export function openTunnel(subject: Subject, origin: Endpoint): Promise<Socket> {
  if (subject.kind === 'direct') return openTcp(origin);
  if (subject.kind === 'socks') return socksConnect(subject, origin);
  return httpConnect(subject, origin);
}

/** A connection to whatever serves the requests: the origin, or a forwarding proxy. */
export function openForwarding(subject: Subject, origin: Endpoint): Promise<Socket> {
  if (subject.kind === 'http') return openTcp(subject.proxy as Endpoint);
  return openTunnel(subject, origin);
}

export interface Response {
  status: number;
  bodyBytes: number;
  /** The whole response, when asked to keep it (small bodies only). */
  body?: Buffer;
}

/**
 * One HTTP/1.1 keep-alive client connection, one request at a time. Responses must carry
 * Content-Length (every subject passes the target's through).
 */
export class HttpConn {
  readonly socket: Socket;
  #pending: Buffer | null = null;
  /** -1 while reading headers; else body bytes still to come. */
  #left = -1;
  #status = 0;
  #bodyBytes = 0;
  #keep: Buffer[] | null = null;
  #resolve: ((response: Response) => void) | null = null;
  #reject: ((error: Error) => void) | null = null;
  #dead: Error | null = null;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (error) => this.#die(error));
    socket.on('close', () => this.#die(new Error('connection closed')));
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => {
      if (this.#resolve) socket.destroy(new Error('response timed out'));
    });
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  request(request: Buffer, keepBody = false): Promise<Response> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#resolve) return Promise.reject(new Error('one request at a time'));
    return new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      this.#left = -1;
      this.#keep = keepBody ? [] : null;
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  #die(error: Error): void {
    if (this.#dead) return;
    this.#dead = error;
    const reject = this.#reject;
    this.#resolve = null;
    this.#reject = null;
    reject?.(error);
  }

  #finish(): void {
    const resolve = this.#resolve;
    this.#resolve = null;
    this.#reject = null;
    this.#left = -1;
    const response: Response = { status: this.#status, bodyBytes: this.#bodyBytes };
    if (this.#keep) response.body = Buffer.concat(this.#keep);
    resolve?.(response);
  }

  #onData(chunk: Buffer): void {
    let data = chunk;
    while (data.length > 0) {
      if (!this.#resolve) {
        this.socket.destroy(new Error('bytes arrived with no request outstanding'));
        return;
      }
      if (this.#left < 0) {
        const buf: Buffer = this.#pending ? Buffer.concat([this.#pending, data]) : data;
        this.#pending = null;
        const end = buf.indexOf(HEADER_END);
        if (end < 0) {
          if (buf.length > 64 * 1024) this.socket.destroy(new Error('response headers too large'));
          else this.#pending = buf;
          return;
        }
        const head = buf.toString('latin1', 0, end);
        this.#status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        if (!length) {
          this.socket.destroy(
            new Error(`response without Content-Length: ${head.split('\r\n')[0]}`),
          );
          return;
        }
        this.#left = Number(length[1]);
        this.#bodyBytes = 0;
        data = buf.subarray(end + 4);
        if (this.#left === 0) {
          this.#finish();
          continue;
        }
      }
      const take = Math.min(this.#left, data.length);
      if (this.#keep) this.#keep.push(data.subarray(0, take));
      this.#bodyBytes += take;
      this.#left -= take;
      data = data.subarray(take);
      if (this.#left === 0) this.#finish();
    }
  }
}
