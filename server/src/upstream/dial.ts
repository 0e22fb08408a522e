/**
 * One connection through a supplier's proxy to one already-checked target address, in
 * two steps: a TCP connection to the proxy (connectToProxy), then the proxy's own
 * protocol over it (negotiate): SOCKS5 through the `socks` package's SocksClient, or an
 * HTTP CONNECT through node:http.
 *
 * Failures are catalogue errors, chosen by where they happened, never by a message:
 * - the proxy cannot be reached, refuses us, fails our credentials or speaks nonsense:
 *   exit_failed (the node cannot carry the stream; retryable elsewhere);
 * - the proxy answers that the target refused, is unreachable or is not allowed:
 *   target_unreachable;
 * - the proxy accepted the request but had no answer in time, or says the connection
 *   timed out: target_timeout.
 * Every path but success destroys the socket.
 */
import { request as httpRequest } from 'node:http';
import { isIP, type LookupFunction, connect as netConnect, type Socket } from 'node:net';
import { formatAuthority } from '@ipcola/shared/protocol';
import { SocksClient } from 'socks';
import { ipcolaError, type ProxyErrorCode } from '../errors/index.ts';
import type { UpstreamProxy } from './proxy-url.ts';

/** TCP keep-alive probes on an idle stream through the proxy start after this much silence. */
const KEEPALIVE_DELAY_MS = 30_000;

/** An IP literal and port the exit policy has already allowed. */
export interface CheckedTarget {
  readonly address: string;
  readonly port: number;
}

/** Given to net.connect so that a host name can never reach the resolver unchecked. */
const refuseLookup: LookupFunction = (hostname, _options, callback) => {
  const error = Object.assign(new Error(`upstream dialling never resolves names (${hostname})`), {
    code: 'UPSTREAM_NO_LOOKUP',
  });
  callback(error, '', 4);
};

/**
 * A TCP connection to the first of the proxy's (checked) addresses that takes one, all
 * within timeoutMs; rejects with exit_failed. `signal` aborts it (the gateway gave up on
 * the stream, or the health probe's shutdown).
 */
export async function connectToProxy(
  addresses: readonly string[],
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Socket> {
  const deadline = performance.now() + timeoutMs;
  const failures: string[] = [];
  for (const address of addresses) {
    const left = deadline - performance.now();
    if (left <= 0 || signal?.aborted) break;
    try {
      return await connectOnce(address, port, left, signal);
    } catch (reason) {
      failures.push(`${formatAuthority(address, port)}: ${String(reason)}`);
    }
  }
  const detail = failures.length > 0 ? failures.join(', ') : 'no time left';
  throw ipcolaError('exit_failed', `the upstream proxy could not be reached (${detail})`);
}

/** Resolves with the connected socket; rejects with a short reason (an errno code or "timeout"). */
function connectOnce(
  address: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({
      host: address,
      port,
      family: isIP(address),
      lookup: refuseLookup,
      allowHalfOpen: true,
    });
    const timeout = AbortSignal.timeout(Math.ceil(timeoutMs));
    const stop = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const done = (reason: string | null) => {
      stop.removeEventListener('abort', onStop);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      if (reason === null) return resolve(socket);
      socket.on('error', () => {}); // a destroyed connecting socket may still report
      socket.destroy();
      reject(reason);
    };
    const onConnect = () => done(null);
    const onError = (error: NodeJS.ErrnoException) => done(error.code ?? 'error');
    const onStop = () => done(stop.reason === timeout.reason ? 'timeout' : 'aborted');
    socket.once('connect', onConnect);
    socket.once('error', onError);
    stop.addEventListener('abort', onStop, { once: true });
  });
}

/**
 * Asks the proxy, over a socket connected to it, for a connection to `target`; resolves
 * with the same socket, now carrying the target's bytes. The socket is destroyed on
 * failure, and when `signal` aborts (rejecting with its reason). Whoever receives it must
 * attach its readers at once (in the same turn of the event loop, as the gateway's splice
 * and http.Agent do): SocksClient hands bytes that arrived with its reply to the socket's
 * 'data' listeners on the next check phase.
 */
export function negotiate(
  socket: Socket,
  proxy: UpstreamProxy,
  target: CheckedTarget,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timeout = AbortSignal.timeout(Math.ceil(timeoutMs));
    const stop = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const finish = (error: unknown) => {
      if (settled) return;
      settled = true;
      stop.removeEventListener('abort', onStop);
      if (error !== null) {
        socket.on('error', () => {});
        socket.destroy();
        reject(error);
        return;
      }
      socket.setNoDelay(true);
      socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
      resolve(socket);
    };
    const where = formatAuthority(target.address, target.port);
    const onStop = () => {
      if (stop.reason !== timeout.reason) {
        finish(stop.reason);
        return;
      }
      const code = handshake.timeoutCode();
      finish(
        ipcolaError(
          code,
          code === 'target_timeout'
            ? `the upstream proxy did not connect to ${where} within ${timeoutMs} ms`
            : `the upstream proxy did not answer within ${timeoutMs} ms`,
        ),
      );
    };
    if (stop.aborted) {
      finish(stop.reason);
      return;
    }
    stop.addEventListener('abort', onStop, { once: true });
    const handshake =
      proxy.protocol === 'socks5'
        ? socksConnect(socket, proxy, target, timeoutMs, finish)
        : httpConnect(socket, proxy, target, finish);
  });
}

interface Handshake {
  /** What a timeout now means: the proxy is silent (exit_failed) or still connecting (target_timeout). */
  timeoutCode(): ProxyErrorCode;
}

/** SOCKS5 REP values that describe the target, not the proxy (RFC 1928 section 6). */
const SOCKS_TARGET_REPLIES: Readonly<Record<number, ProxyErrorCode>> = {
  2: 'target_unreachable', // not allowed by the proxy's ruleset
  3: 'target_unreachable', // network unreachable
  4: 'target_unreachable', // host unreachable
  5: 'target_unreachable', // connection refused
  6: 'target_timeout', // TTL expired
};

function socksConnect(
  socket: Socket,
  proxy: UpstreamProxy,
  target: CheckedTarget,
  timeoutMs: number,
  finish: (error: Error | null) => void,
): Handshake {
  // SocksClient reports failures as message text only. The first bytes the proxy sends
  // (method choice, authentication status, CONNECT reply) say exactly which step
  // failed, so they are kept aside, read-only, until the handshake is over.
  const reply = new SocksReplyLog();
  const observe = (chunk: Buffer) => reply.add(chunk);
  socket.on('data', observe);
  const done = (error: Error | null) => {
    socket.off('data', observe);
    finish(error);
  };
  SocksClient.createConnection({
    proxy: {
      host: socket.remoteAddress ?? '',
      port: proxy.port,
      type: 5,
      ...(proxy.credentials
        ? { userId: proxy.credentials.username, password: proxy.credentials.password }
        : {}),
    },
    command: 'connect',
    destination: { host: target.address, port: target.port },
    existing_socket: socket,
    // Ours decides; the library's own timer must never be the one that fires first.
    timeout: timeoutMs + 60_000,
  }).then(
    () => done(null),
    (cause: unknown) => {
      done(ipcolaError(reply.failureCode(), reply.describeFailure(), { cause }));
    },
  );
  return { timeoutCode: () => (reply.awaitingConnectReply() ? 'target_timeout' : 'exit_failed') };
}

/** The proxy's first bytes: `05 METHOD`, then `01 STATUS` for user/password, then `05 REP ...`. */
class SocksReplyLog {
  #bytes = Buffer.alloc(0);

  add(chunk: Buffer): void {
    if (this.#bytes.length < 6) this.#bytes = Buffer.concat([this.#bytes, chunk]).subarray(0, 6);
  }

  /** Where the CONNECT reply starts, or null while the steps before it are incomplete or failed. */
  #replyOffset(): number | null {
    const bytes = this.#bytes;
    if (bytes.length < 2 || bytes[0] !== 0x05) return null;
    if (bytes[1] === 0x00) return 2;
    if (bytes[1] !== 0x02 || bytes.length < 4 || bytes[3] !== 0x00) return null;
    return 4;
  }

  awaitingConnectReply(): boolean {
    const offset = this.#replyOffset();
    return offset !== null && this.#bytes.length < offset + 2;
  }

  failureCode(): ProxyErrorCode {
    const offset = this.#replyOffset();
    const rep = offset === null ? undefined : this.#bytes[offset + 1];
    return rep === undefined ? 'exit_failed' : (SOCKS_TARGET_REPLIES[rep] ?? 'exit_failed');
  }

  describeFailure(): string {
    const bytes = this.#bytes;
    if (bytes.length < 2) return 'the upstream SOCKS5 proxy closed before choosing a method';
    if (bytes[0] !== 0x05) return 'the upstream proxy does not speak SOCKS5';
    if (bytes[1] === 0xff) return 'the upstream SOCKS5 proxy accepts none of our methods';
    if (bytes[1] === 0x02 && bytes.length >= 4 && bytes[3] !== 0x00) {
      return 'the upstream SOCKS5 proxy refused our credentials';
    }
    const offset = this.#replyOffset();
    const rep = offset === null ? undefined : bytes[offset + 1];
    if (rep === undefined) return 'the upstream SOCKS5 proxy closed during the handshake';
    return `the upstream SOCKS5 proxy answered CONNECT with REP 0x${rep.toString(16).padStart(2, '0')}`;
  }
}

/** HTTP statuses a CONNECT answer may carry that describe the target, not the proxy. */
function connectStatusCode(status: number): ProxyErrorCode {
  if (status === 504 || status === 408) return 'target_timeout';
  // 502: the proxy could not reach the target; 403: it will not carry this target;
  // 590-596: proxy-chain's (and Apify-compatible proxies') refused, not found, reset...
  if (status === 502 || status === 403 || (status >= 590 && status <= 596)) {
    return 'target_unreachable';
  }
  // 407 (our credentials), 5xx of the proxy itself, 597 (its own upstream's auth), others.
  return 'exit_failed';
}

function httpConnect(
  socket: Socket,
  proxy: UpstreamProxy,
  target: CheckedTarget,
  finish: (error: Error | null) => void,
): Handshake {
  const authority = formatAuthority(target.address, target.port);
  const headers: Record<string, string> = { Host: authority };
  if (proxy.credentials) {
    const { username, password } = proxy.credentials;
    headers['Proxy-Authorization'] =
      `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  }
  const request = httpRequest({
    method: 'CONNECT',
    path: authority,
    headers,
    // Our socket, already connected to the checked address: no agent, no second lookup.
    createConnection: () => socket,
  });
  request.once('connect', (response, tunnel: Socket, head: Buffer) => {
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      // Bytes the target sent right behind the proxy's answer belong to the stream.
      if (head.length > 0) tunnel.unshift(head);
      finish(null);
      return;
    }
    finish(
      ipcolaError(
        connectStatusCode(status),
        `the upstream HTTP proxy answered CONNECT ${authority} with ${status}`,
      ),
    );
  });
  // Node hands every answer to a CONNECT to 'connect'; an error here is the proxy hanging
  // up without an answer. Some proxies (proxy-chain) do that when the target refuses, but
  // it cannot be told from the proxy failing, so it counts against the exit (retryable).
  request.on('error', (cause: NodeJS.ErrnoException) =>
    finish(
      ipcolaError('exit_failed', `the upstream HTTP proxy dropped the CONNECT (${cause.code})`, {
        cause,
      }),
    ),
  );
  request.end();
  // The proxy connects to the target before it answers: waiting is waiting for the target.
  return { timeoutCode: () => 'target_timeout' };
}
