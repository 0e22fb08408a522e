/**
 * The hop between instances: an instance whose customer wants an exit held by another
 * instance's hub opens an HTTP/2 CONNECT stream to that instance, which opens the stream
 * through its node and splices the two. It is the tunnel protocol once more (one HTTP/2
 * session per pair of instances, a stream per customer connection, the node's answer
 * code in ERROR_HEADER), so a cross-instance open costs one stream open on a warm
 * session, not a TCP or TLS handshake.
 *
 * Instances prove themselves with a secret derived from the shared pepper (every
 * instance of one deployment shares the database, hence the pepper): no setting to
 * distribute, nothing another deployment's instance could present.
 */
import { timingSafeEqual } from 'node:crypto';
import {
  type ClientHttp2Session,
  connect,
  constants,
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type SecureClientSessionOptions,
  type SecureServerOptions,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import {
  canonicalIp,
  ERROR_HEADER,
  EXIT_IP_HEADER,
  formatAuthority,
  NODE_ID_HEADER,
  parseAuthority,
  tunnelSettings,
  widenConnectionWindow,
} from '@ipcola/shared/protocol';
import { spliceStreams } from '@ipcola/shared/splice';
import {
  isTunnelErrorCode,
  tunnelCodeOf,
  tunnelError,
  tunnelStatusOf,
} from '@ipcola/shared/tunnel-errors';

export const PEER_AUTH_HEADER = 'x-ipcola-peer';
/** Where an instance asks the others about an exit proof it received for no connection of its own. */
const PROOF_PATH = '/v1/exit-proof';
const SEEN_FROM_HEADER = 'x-ipcola-seen-from';
const PROOF_NONCE_HEADER = 'x-ipcola-exit-proof';
/** Set on a 404 that means "no connection here has this nonce". */
const UNKNOWN_HEADER = 'x-ipcola-unknown';
/** Set on a refusal from a draining instance: the node is moving, ask again where it went. */
const MOVING_HEADER = 'x-ipcola-moving';

/** An exit proof one instance received, and the answer of the one that judged it. */
export interface ProofClaim {
  readonly nonce: string;
  readonly ip: string;
  readonly seenFrom: string;
}
export type ProofAnswer = [status: number, message: string];

export interface PeerTarget {
  readonly nodeId: string;
  readonly exitIp: string;
  readonly host: string;
  readonly port: number;
}

export interface PeerServerOptions {
  /** What a peer must present: both ends derive it from the shared pepper. */
  readonly secret: Buffer;
  /** Opens the stream through a node of this instance's hub. */
  openLocal(target: PeerTarget, signal: AbortSignal): Promise<Duplex>;
  /** Judges an exit proof for one of this hub's connections; null when none has the nonce. */
  judgeProof(claim: ProofClaim): ProofAnswer | null;
  /** Whether this instance is draining: its nodes are moving to other instances. */
  draining(): boolean;
  /** No byte either way for this long ends a hop (the customer's side has its own). */
  readonly idleTimeoutMs: number;
  /** TLS between instances, when the deployment gives certificates. */
  readonly tls?: SecureServerOptions;
}

/** The listener other instances open streams on (PEER_PORT). */
export function createPeerServer(options: PeerServerOptions): Http2Server | Http2SecureServer {
  const settings = tunnelSettings();
  const server = options.tls
    ? createSecureServer({ ...options.tls, settings, allowHTTP1: false })
    : createServer({ settings });
  server.on('session', (session) => session.once('connect', () => widenConnectionWindow(session)));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {
      // A peer that resets its stream: the splice or the close below handles it.
    });
    if (headers[':method'] === 'POST' && headers[':path'] === PROOF_PATH) {
      judge(stream, headers, options);
      return;
    }
    const target = readTarget(headers, options.secret);
    if ('status' in target) {
      stream.respond({ ':status': target.status }, { endStream: true });
      return;
    }
    void carry(stream, target, options);
  });
  return server;
}

async function carry(
  stream: ServerHttp2Stream,
  target: PeerTarget,
  options: PeerServerOptions,
): Promise<void> {
  const cancel = new AbortController();
  const onGone = () => cancel.abort(new Error('the peer cancelled the stream'));
  stream.once('close', onGone);
  let upstream: Duplex;
  try {
    upstream = await options.openLocal(target, cancel.signal);
  } catch (error) {
    const code = tunnelCodeOf(error);
    if (!stream.destroyed && !stream.headersSent) {
      // Draining, its node has just left this hub on its way to another: the asker waits
      // for it to land there (measured without this: a request for the `de` exit that
      // reached a rolled instance within 2 ms of its hub closing got 502 exit_failed).
      const moving = code === 'exit_failed' && options.draining() ? { [MOVING_HEADER]: '1' } : {};
      stream.respond(
        { ':status': tunnelStatusOf(code), [ERROR_HEADER]: code, ...moving },
        { endStream: true },
      );
    }
    return;
  } finally {
    stream.off('close', onGone);
  }
  if (stream.destroyed || stream.closed) {
    upstream.destroy();
    return;
  }
  stream.respond({ ':status': 200 });
  spliceStreams(stream, upstream, { idleTimeoutMs: options.idleTimeoutMs });
}

function judge(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  options: PeerServerOptions,
): void {
  const presented = headers[PEER_AUTH_HEADER];
  const nonce = headers[PROOF_NONCE_HEADER];
  const ip = headers[EXIT_IP_HEADER];
  const seenFrom = headers[SEEN_FROM_HEADER];
  if (typeof presented !== 'string' || !sameSecret(presented, options.secret)) {
    stream.respond({ ':status': 403 }, { endStream: true });
    return;
  }
  if (typeof nonce !== 'string' || typeof ip !== 'string' || typeof seenFrom !== 'string') {
    stream.respond({ ':status': 400 }, { endStream: true });
    return;
  }
  const answer = options.judgeProof({ nonce, ip, seenFrom });
  if (!answer) {
    stream.respond({ ':status': 404, [UNKNOWN_HEADER]: '1' }, { endStream: true });
    return;
  }
  stream.respond({ ':status': answer[0], 'content-type': 'text/plain; charset=utf-8' });
  stream.end(answer[1]);
}

function readTarget(headers: IncomingHttpHeaders, secret: Buffer): PeerTarget | { status: number } {
  const presented = headers[PEER_AUTH_HEADER];
  if (typeof presented !== 'string' || !sameSecret(presented, secret)) return { status: 403 };
  if (headers[':method'] !== 'CONNECT') return { status: 405 };
  const authority = parseAuthority(headers[':authority'] ?? '');
  const nodeId = headers[NODE_ID_HEADER];
  const exitIpHeader = headers[EXIT_IP_HEADER];
  const exitIp = typeof exitIpHeader === 'string' ? canonicalIp(exitIpHeader) : null;
  if (!authority || typeof nodeId !== 'string' || exitIp === null) return { status: 400 };
  return { nodeId, exitIp, host: authority.host, port: authority.port };
}

function sameSecret(presented: string, secret: Buffer): boolean {
  const given = Buffer.from(presented, 'base64url');
  return given.length === secret.length && timingSafeEqual(given, secret);
}

export interface PeerClientOptions {
  readonly secret: Buffer;
  /** How long the holder may take to answer (the gateway's own open timeout bounds it too). */
  readonly answerTimeoutMs: number;
  /** Trust for TLS between instances (a private CA), when the peers serve TLS. */
  readonly tls?: Pick<SecureClientSessionOptions, 'ca' | 'rejectUnauthorized'>;
}

export interface PeerClient {
  /** A stream through the node held by the instance at `address` (`host:port`). */
  open(address: string, target: PeerTarget, signal: AbortSignal): Promise<Duplex>;
  /** Asks the instance at `address` to judge a proof; null when it holds no such connection. */
  prove(address: string, claim: ProofClaim, timeoutMs: number): Promise<ProofAnswer | null>;
  close(): void;
}

/** Error codes of a failed hop that say the peer itself is gone, not its node. */
const PEER_GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ETIMEDOUT', 'EPIPE']);

/** A refusal from a draining instance: its node is on its way to another instance. */
export function isMovingRefusal(error: unknown): boolean {
  return (error as { moving?: unknown } | null)?.moving === true;
}

export class PeerUnreachableError extends Error {
  readonly code = 'exit_failed';
  /** Read by the gateway: no byte reached the target, another exit may be taken. */
  readonly holderLost = true;
  constructor(
    readonly address: string,
    options: ErrorOptions,
  ) {
    super(`the instance at ${address} does not answer`, options);
  }
}

/** One warm HTTP/2 session per peer, opened on first use and again after it dies. */
export function createPeerClient(options: PeerClientOptions): PeerClient {
  const sessions = new Map<string, ClientHttp2Session>();
  /** Why a session died, read by the streams it takes with it. */
  const failures = new WeakMap<ClientHttp2Session, Error>();
  const auth = options.secret.toString('base64url');
  const sessionTo = (address: string): ClientHttp2Session => {
    const open = sessions.get(address);
    if (open && !open.closed && !open.destroyed) return open;
    const scheme = options.tls ? 'https' : 'http';
    const session = connect(`${scheme}://${address}`, {
      settings: tunnelSettings(),
      ...(options.tls ?? {}),
    });
    session.once('connect', () => widenConnectionWindow(session));
    // The streams waiting on it fail with their own close; the next open reconnects.
    session.on('error', (error) => failures.set(session, error));
    session.once('close', () => {
      if (sessions.get(address) === session) sessions.delete(address);
    });
    // A warm session should not keep the process alive on its own.
    session.unref();
    sessions.set(address, session);
    return session;
  };

  return {
    open(address, target, signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      const session = sessionTo(address);
      const stream = session.request(
        {
          ':method': 'CONNECT',
          ':authority': formatAuthority(target.host, target.port),
          [NODE_ID_HEADER]: target.nodeId,
          [EXIT_IP_HEADER]: target.exitIp,
          [PEER_AUTH_HEADER]: auth,
        },
        { endStream: false },
      );
      return new Promise<Duplex>((resolve, reject) => {
        const timer = setTimeout(
          () => settle(tunnelError('target_timeout', `the instance at ${address} did not answer`)),
          options.answerTimeoutMs,
        );
        const settle = (error?: unknown) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          stream.off('response', onResponse);
          stream.off('close', onClose);
          if (error === undefined) {
            resolve(stream);
            return;
          }
          if (!stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
          reject(error);
        };
        const onResponse = (headers: IncomingHttpHeaders & { ':status'?: number }) => {
          const status = headers[':status'];
          if (status === 200) {
            settle();
            return;
          }
          const header = headers[ERROR_HEADER];
          const code = isTunnelErrorCode(header) ? header : 'exit_failed';
          const refusal = tunnelError(
            code,
            `the instance at ${address} answered ${String(status)}`,
          );
          settle(
            headers[MOVING_HEADER] === '1' ? Object.assign(refusal, { moving: true }) : refusal,
          );
        };
        const onClose = () => {
          // A session that failed cancels its streams with an error whose cause says why.
          const cause = (failures.get(session) ?? streamError?.cause ?? streamError) as
            | NodeJS.ErrnoException
            | undefined;
          // Unanswered, the stream reached no target. Its whole session gone without an
          // error is the peer gone too: a SIGKILLed instance's socket may close cleanly,
          // and a forwarded request through the other instance then got 502 exit_failed
          // where another exit could take it.
          const peerGone =
            (cause?.code !== undefined && PEER_GONE.has(cause.code)) ||
            session.destroyed ||
            session.closed ||
            stream.rstCode === constants.NGHTTP2_REFUSED_STREAM;
          settle(
            peerGone
              ? new PeerUnreachableError(address, { cause })
              : tunnelError('exit_failed', `the instance at ${address} dropped the stream`),
          );
        };
        const onAbort = () => settle(signal.reason);
        let streamError: Error | undefined;
        stream.on('error', (error) => {
          streamError = error;
        });
        stream.once('response', onResponse);
        stream.once('close', onClose);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    prove(address, claim, timeoutMs) {
      const stream = sessionTo(address).request(
        {
          ':method': 'POST',
          ':path': PROOF_PATH,
          [PEER_AUTH_HEADER]: auth,
          [PROOF_NONCE_HEADER]: claim.nonce,
          [EXIT_IP_HEADER]: claim.ip,
          [SEEN_FROM_HEADER]: claim.seenFrom,
        },
        { endStream: true, signal: AbortSignal.timeout(timeoutMs) },
      );
      return new Promise<ProofAnswer | null>((resolve, reject) => {
        let status = 0;
        let unknown = false;
        let body = '';
        stream.on('response', (headers) => {
          status = Number(headers[':status']);
          unknown = headers[UNKNOWN_HEADER] === '1';
        });
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          if (body.length < 1_000) body += chunk;
        });
        stream.on('end', () => resolve(unknown || status === 0 ? null : [status, body.trim()]));
        stream.on('error', reject);
      });
    },
    close() {
      for (const session of sessions.values()) session.destroy();
      sessions.clear();
    },
  };
}
