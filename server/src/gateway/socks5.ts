/**
 * The SOCKS5 listener: RFC 1928 CONNECT behind RFC 1929 username/password (or, from a
 * key's password-less ranges, no authentication), as a protocol module. It knows nothing about keys, exits, billing or splicing: the three
 * callbacks decide who may connect, open the upstream, and join the two streams.
 *
 * Why our own state machine and not `@pondwader/socks5-server` (1.0.10, read and
 * probed): it has no handshake timeout (a silent client stays open forever), drops
 * NMETHODS > 128 and NMETHODS 0 without the `05 FF` answer, accepts any
 * sub-negotiation version, closes on an unknown ATYP without REP 0x08, answers an
 * unsupported command with a 2-byte `05 07` (no ATYP/BND, so a conforming client waits
 * for the rest), resumes the socket before an asynchronous connection handler has an
 * upstream (bytes pipelined after the CONNECT request are lost), reads one field at a
 * time with a promise per read and `socket.push()` to put bytes back, and leaves the
 * socket without an 'error' listener while the handler runs. Wrapping it would mean
 * patching most of it; the protocol is three small frames.
 *
 * The shape: bytes are appended to one buffer and handed to the pure parsers in
 * socks5-frames.ts, which answer "incomplete" or a whole frame; the phase says which
 * parser applies. Pipelined frames (greeting, credentials and request in one write, or
 * data right after the request) are handled as they come.
 *
 * Decisions the RFCs leave open, all deliberate:
 * - Method 0x02 is chosen whenever it is offered, so credentials, when a client has
 *   them, always decide. A greeting offering 0x00 and not 0x02 (Chromium's) is passed to
 *   admitWithoutAuthentication(): a key for the client's address chooses 0x00, none gets
 *   `05 FF` as does a greeting without either (NMETHODS 0 included), and the
 *   connection is closed. Its refusals are answered as authenticate()'s are, with
 *   `05 FF` standing in for the failed sub-negotiation.
 * - A username of length 0 fails the sub-negotiation (`auth_required`) without calling
 *   authenticate(). A password of length 0 is passed on: it is how IP allow-list keys
 *   authenticate (the username still names the key).
 * - authenticate() refusals: a code whose catalogue reply is 'auth' (auth_required,
 *   auth_failed) fails the RFC 1929 sub-negotiation (`01 01`) and closes. RFC 1929 has
 *   no other status, so any other code (bad_params, ip_not_allowed, quota_exhausted,
 *   rate_limited ...) accepts the sub-negotiation (`01 00`), reads the request and
 *   answers it with that code's REP byte, without calling connect(): the client sees
 *   the precise reason instead of a bare "authentication failed". An unexpected error
 *   (not an IPColaError with a proxy code) is answered the same way with REP 0x01.
 * - connect() refusals: the catalogue's REP byte; a code whose reply is 'auth' can no
 *   longer be said and becomes 0x02 (not allowed); an unexpected error becomes 0x01
 *   and is logged at error level.
 * - Not SOCKS5 at all (SOCKS4, HTTP, TLS: a first byte other than 0x05) or a request
 *   whose VER is not 0x05: closed at once, no reply (we cannot speak the client's
 *   protocol and it would not understand ours).
 * - handshakeTimeoutMs is one deadline from accept until the CONNECT request is fully
 *   read (authenticate() time included): it closes silent, slow or stalled clients,
 *   without a reply (the catalogue's request_timeout, whose reply is 'close'; a callback
 *   that throws that code closes the connection the same way).
 *   connect() is not under it; its own deadline is the connector's (target_timeout).
 * - After a refusal the reply is written, our side is ended, and what the client still
 *   sends is read and discarded for up to handshakeTimeoutMs, so that closing with
 *   unread input does not reset the connection and destroy the reply in flight.
 * - EOF from the client before the success reply means it left: the socket is
 *   destroyed (half-closing before the reply is not supported).
 * - Buffering is bounded: before authentication only an incomplete frame (at most 512
 *   bytes) plus what arrived while authenticate() ran, reading paused past 1 KiB; while
 *   connect() runs, early data up to 64 KiB, reading paused past it. Reading on while
 *   connect() runs is what notices a client that leaves: client.gone aborts, so that
 *   connect() can stop opening, and an upstream it opened anyway is destroyed as soon
 *   as it settles.
 * - The success reply's BND.ADDR/BND.PORT is 0.0.0.0:0 (see reply() in socks5-frames).
 *
 * Logs: one child logger per connection with `conn` (a random id) and the client's
 * address and port; never the username or the password.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AbortNotice } from '@ipcola/shared/protocol';
import { isIPColaError, isProxyErrorCode, PROXY_ERRORS } from '../errors/index.ts';
import { type ConnectionLog, type Logger, lazyChild, newConnectionId } from '../log/index.ts';
import { clientGone, stopWatchingClient } from './client-gone.ts';
import {
  authReply,
  type Credentials,
  METHOD_NO_ACCEPTABLE,
  METHOD_NO_AUTHENTICATION,
  METHOD_USERNAME_PASSWORD,
  methodReply,
  parseCredentials,
  parseGreeting,
  parseRequest,
  REP_GENERAL_FAILURE,
  REP_NOT_ALLOWED,
  REP_SUCCEEDED,
  reply,
  type SocksTarget,
} from './socks5-frames.ts';

export type { SocksTarget } from './socks5-frames.ts';

/** The connecting client, as the TCP socket sees it. */
export interface SocksClient {
  address: string;
  port: number;
  /** Aborts once the client's socket has closed (what connect() opens for it may stop). */
  gone: AbortNotice;
}

/** What connect() opens: the module only ever destroys it (when the client has left). */
export interface Destroyable {
  destroy(): void;
}

export interface Socks5Options<Auth, Upstream extends Destroyable> {
  /** From accept until the CONNECT request is read; then the client is closed. */
  handshakeTimeoutMs: number;
  /** Told of each client closed for running out of handshakeTimeoutMs (request_timeout). */
  onHandshakeTimeout?: (client: SocksClient) => void;
  logger: Logger;
  /**
   * Checks the RFC 1929 credentials (username 1-255 bytes, password 0-255 bytes, both
   * decoded as UTF-8). Throws an IPColaError (auth_failed, bad_params, ip_not_allowed,
   * quota_exhausted, rate_limited ...) to refuse.
   */
  authenticate(username: string, password: string, client: SocksClient): Promise<Auth>;
  /**
   * A client offering only "no authentication": its admission when its address may go
   * without credentials, null when not. Absent: method 0x00 is never chosen.
   */
  admitWithoutAuthentication?(client: SocksClient): Promise<Auth | null>;
  /** Opens the upstream; throws an IPColaError to refuse (the code picks the REP byte). */
  connect(auth: Auth, target: SocksTarget, client: SocksClient): Promise<Upstream>;
  /**
   * Called once the success reply is written: the caller splices socket <-> upstream.
   * The socket is paused; bytes the client sent after its request are at the front of
   * its read buffer. This module keeps one 'error' listener on it (it only logs, so an
   * early error cannot crash the process) and no other.
   */
  tunnel(socket: Socket, upstream: Upstream, auth: Auth): void;
}

/** A net.Server speaking SOCKS5; listen() and close() it as any other. */
export function createSocks5Server<Auth, Upstream extends Destroyable>(
  options: Socks5Options<Auth, Upstream>,
): Server {
  const { handshakeTimeoutMs } = options;
  if (!(Number.isFinite(handshakeTimeoutMs) && handshakeTimeoutMs > 0)) {
    throw new TypeError('handshakeTimeoutMs must be a finite number > 0');
  }
  return createServer({ noDelay: true }, (socket) => {
    try {
      acceptConnection(socket, options);
    } catch (error) {
      options.logger.error({ err: error }, 'socks5: accepting a connection failed');
      socket.destroy();
    }
  });
}

function acceptConnection<Auth, Upstream extends Destroyable>(
  socket: Socket,
  options: Socks5Options<Auth, Upstream>,
): void {
  const address = socket.remoteAddress;
  const port = socket.remotePort;
  if (address === undefined || port === undefined) {
    // Already gone between accept and this callback.
    socket.destroy();
    return;
  }
  const client: SocksClient = { address, port, gone: clientGone(socket) };
  const log = lazyChild(options.logger, () => ({
    conn: newConnectionId(),
    client: address,
    clientPort: port,
  }));
  new Socks5Connection(socket, options, client, log).start();
}

/** Above this, reading pauses while authenticate() runs (no arbitrary buffering before auth). */
const PRE_AUTH_BUFFER_LIMIT = 1024;
/** Above this, reading pauses while connect() runs. */
const EARLY_DATA_LIMIT = 64 * 1024;

const EMPTY = Buffer.alloc(0);

type Phase =
  /** Waiting for `VER NMETHODS METHODS`. */
  | 'greeting'
  /** Waiting for the RFC 1929 frame. */
  | 'credentials'
  | 'authenticating'
  /** Waiting for the CONNECT request. */
  | 'request'
  | 'connecting'
  /** A refusal was written or the socket destroyed: nothing more is read or written. */
  | 'closing'
  | 'closed'
  /** tunnel() owns the socket. */
  | 'handed-over';

/** What authenticate() said, once it has. */
type AuthOutcome<Auth> = { ok: true; auth: Auth } | { ok: false; rep: number };

class Socks5Connection<Auth, Upstream extends Destroyable> {
  readonly #socket: Socket;
  readonly #options: Socks5Options<Auth, Upstream>;
  readonly #client: SocksClient;
  readonly #log: ConnectionLog;
  #phase: Phase = 'greeting';
  /** Bytes received and not yet consumed by a parser. */
  #buffer: Buffer = EMPTY;
  #outcome: AuthOutcome<Auth> | null = null;
  /** The handshake deadline, then (after a refusal) the linger deadline. */
  #timer: NodeJS.Timeout | undefined;

  constructor(
    socket: Socket,
    options: Socks5Options<Auth, Upstream>,
    client: SocksClient,
    log: ConnectionLog,
  ) {
    this.#socket = socket;
    this.#options = options;
    this.#client = client;
    this.#log = log;
  }

  start(): void {
    const socket = this.#socket;
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('end', this.#onEnd);
    socket.on('data', this.#onData);
    this.#setTimer(this.#onDeadline);
  }

  readonly #onData = (chunk: Buffer): void => {
    const phase = this.#phase;
    if (phase === 'closing' || phase === 'closed' || phase === 'handed-over') return;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (phase === 'authenticating' || phase === 'connecting') {
      this.#limitBuffer();
      return;
    }
    this.#advance();
  };

  readonly #onEnd = (): void => {
    if (!this.#inHandshake() && this.#phase !== 'connecting') return;
    this.#log.debug({ phase: this.#phase }, 'socks5: client closed before the reply');
    this.#destroy();
  };

  readonly #onClose = (): void => {
    this.#clearTimer();
    this.#buffer = EMPTY;
    if (this.#phase !== 'handed-over') this.#phase = 'closed';
  };

  readonly #onError = (error: NodeJS.ErrnoException): void => {
    // The socket destroys itself after 'error'; 'close' follows.
    this.#log.debug({ code: error.code, phase: this.#phase }, 'socks5: client socket error');
  };

  readonly #onDeadline = (): void => {
    this.#timer = undefined;
    if (!this.#inHandshake()) return;
    this.#log.debug({ phase: this.#phase }, 'socks5: handshake timed out');
    this.#options.onHandshakeTimeout?.(this.#client);
    this.#destroy();
  };

  #inHandshake(): boolean {
    const phase = this.#phase;
    return (
      phase === 'greeting' ||
      phase === 'credentials' ||
      phase === 'authenticating' ||
      phase === 'request'
    );
  }

  /** Runs the parser of the current phase over the buffer for as long as frames are whole. */
  #advance(): void {
    for (;;) {
      switch (this.#phase) {
        case 'greeting':
          if (!this.#onGreeting()) return;
          break;
        case 'credentials':
          if (!this.#onCredentials()) return;
          break;
        case 'request':
          this.#onRequest();
          return;
        default:
          return;
      }
    }
  }

  /** True when the next phase can go on with the buffer. */
  #onGreeting(): boolean {
    const parsed = parseGreeting(this.#buffer);
    switch (parsed.kind) {
      case 'incomplete':
        return false;
      case 'invalid':
      case 'refused':
        this.#log.debug({ reason: parsed.reason }, 'socks5: not a SOCKS5 greeting');
        this.#destroy();
        return false;
      case 'frame': {
        this.#consume(parsed.size);
        if (parsed.value.offersUsernamePassword) {
          this.#socket.write(methodReply(METHOD_USERNAME_PASSWORD));
          this.#phase = 'credentials';
          return true;
        }
        const { admitWithoutAuthentication } = this.#options;
        if (parsed.value.offersNoAuthentication && admitWithoutAuthentication) {
          this.#phase = 'authenticating';
          void this.#settleAuthentication(
            () => admitWithoutAuthentication(this.#client),
            methodReply(METHOD_NO_AUTHENTICATION),
            methodReply(METHOD_NO_ACCEPTABLE),
          );
          this.#limitBuffer();
          return false;
        }
        this.#log.debug('socks5: client offers no username/password method');
        this.#refuse(methodReply(METHOD_NO_ACCEPTABLE));
        return false;
      }
    }
  }

  #onCredentials(): boolean {
    const parsed = parseCredentials(this.#buffer);
    switch (parsed.kind) {
      case 'incomplete':
        return false;
      case 'invalid':
      case 'refused':
        this.#log.debug({ reason: parsed.reason }, 'socks5: bad sub-negotiation');
        this.#refuse(authReply(false));
        return false;
      case 'frame':
        this.#consume(parsed.size);
        if (parsed.value.username === '') {
          this.#log.info({ code: 'auth_required' }, 'socks5: refused');
          this.#refuse(authReply(false));
          return false;
        }
        this.#phase = 'authenticating';
        void this.#authenticate(parsed.value);
        // Whatever came pipelined after the frame waits (bounded) for the answer.
        this.#limitBuffer();
        return false;
    }
  }

  #authenticate({ username, password }: Credentials): Promise<void> {
    return this.#settleAuthentication(
      () => this.#options.authenticate(username, password, this.#client),
      authReply(true),
      authReply(false),
    );
  }

  /**
   * Runs an admission and answers with `accepted` or `failed` (the RFC 1929 status, or
   * the method choice for password-less clients). null from the admission is `failed`.
   */
  async #settleAuthentication(
    attempt: () => Promise<Auth | null>,
    accepted: Buffer,
    failed: Buffer,
  ): Promise<void> {
    let outcome: AuthOutcome<Auth>;
    try {
      const auth = await attempt();
      if (auth === null) {
        if (this.#phase !== 'authenticating') return;
        this.#log.info({ code: 'auth_required' }, 'socks5: refused');
        this.#refuse(failed);
        return;
      }
      outcome = { ok: true, auth };
    } catch (error) {
      if (this.#phase !== 'authenticating') return;
      const rep = this.#replyFor(error, 'authenticate');
      if (rep === 'close') {
        this.#destroy();
        return;
      }
      if (rep === 'auth') {
        this.#refuse(failed);
        return;
      }
      // Neither frame can say more than "failed": accept and answer the request with the REP.
      outcome = { ok: false, rep };
    }
    if (this.#phase !== 'authenticating') return;
    this.#outcome = outcome;
    this.#socket.write(accepted);
    this.#phase = 'request';
    this.#socket.resume();
    this.#advance();
  }

  #onRequest(): void {
    const parsed = parseRequest(this.#buffer);
    if (parsed.kind === 'incomplete') return;
    if (parsed.kind === 'invalid') {
      this.#log.debug({ reason: parsed.reason }, 'socks5: not a SOCKS5 request');
      this.#destroy();
      return;
    }
    const outcome = this.#outcome;
    if (outcome === null || !outcome.ok) {
      // The authentication refusal outranks whatever is wrong with the request.
      this.#refuse(reply(outcome?.rep ?? REP_GENERAL_FAILURE));
      return;
    }
    if (parsed.kind === 'refused') {
      this.#log.info({ reason: parsed.reason, rep: parsed.rep }, 'socks5: request refused');
      this.#refuse(reply(parsed.rep));
      return;
    }
    this.#consume(parsed.size);
    this.#clearTimer();
    this.#phase = 'connecting';
    void this.#connect(outcome.auth, parsed.value);
    this.#limitBuffer();
  }

  async #connect(auth: Auth, target: SocksTarget): Promise<void> {
    this.#log.debug({ target }, 'socks5: connect');
    let upstream: Upstream;
    try {
      upstream = await this.#options
        .connect(auth, target, this.#client)
        .finally(() => stopWatchingClient(this.#socket));
    } catch (error) {
      if (this.#phase !== 'connecting') {
        this.#log.debug({ err: error }, 'socks5: connect failed after the client left');
        return;
      }
      const rep = this.#replyFor(error, 'connect');
      if (rep === 'close') this.#destroy();
      else this.#refuse(reply(rep === 'auth' ? REP_NOT_ALLOWED : rep));
      return;
    }
    if (this.#phase !== 'connecting' || this.#socket.destroyed) {
      this.#log.debug('socks5: client left while connecting; upstream dropped');
      destroyQuietly(upstream, this.#log);
      return;
    }
    this.#handOver(upstream, auth);
  }

  #handOver(upstream: Upstream, auth: Auth): void {
    const socket = this.#socket;
    this.#phase = 'handed-over';
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
    // Removing the 'data' listener does not stop the flow: pause, so nothing is emitted
    // before the tunnel listens, then put the early bytes back in front.
    socket.pause();
    socket.write(reply(REP_SUCCEEDED));
    if (this.#buffer.length > 0) socket.unshift(this.#buffer);
    this.#buffer = EMPTY;
    this.#log.debug('socks5: tunnel');
    try {
      this.#options.tunnel(socket, upstream, auth);
    } catch (error) {
      this.#log.error({ err: error }, 'socks5: tunnel() threw');
      socket.destroy();
      destroyQuietly(upstream, this.#log);
    }
  }

  /** The reply for a refusal: 'auth' (RFC 1929 failure), 'close' (none) or a REP byte. */
  #replyFor(error: unknown, stage: 'authenticate' | 'connect'): 'auth' | 'close' | number {
    if (isIPColaError(error) && isProxyErrorCode(error.code)) {
      this.#log.info({ code: error.code, stage }, 'socks5: refused');
      return PROXY_ERRORS[error.code].socks;
    }
    this.#log.error({ err: error, stage }, `socks5: ${stage}() failed unexpectedly`);
    return REP_GENERAL_FAILURE;
  }

  /** Pauses reading while a callback runs and the buffer holds more than it may. */
  #limitBuffer(): void {
    const limit = this.#phase === 'connecting' ? EARLY_DATA_LIMIT : PRE_AUTH_BUFFER_LIMIT;
    if (this.#buffer.length >= limit) this.#socket.pause();
  }

  #consume(size: number): void {
    this.#buffer = size >= this.#buffer.length ? EMPTY : this.#buffer.subarray(size);
  }

  /** Writes the last reply, ends our side, drains the client until it closes or lingers too long. */
  #refuse(last: Buffer): void {
    this.#phase = 'closing';
    this.#buffer = EMPTY;
    this.#clearTimer();
    const socket = this.#socket;
    socket.end(last);
    socket.resume();
    this.#setTimer(() => {
      this.#timer = undefined;
      socket.destroy();
    });
  }

  #destroy(): void {
    this.#phase = 'closing';
    this.#buffer = EMPTY;
    this.#clearTimer();
    this.#socket.destroy();
  }

  #setTimer(callback: () => void): void {
    this.#timer = setTimeout(callback, this.#options.handshakeTimeoutMs);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function destroyQuietly(upstream: Destroyable, log: ConnectionLog): void {
  try {
    upstream.destroy();
  } catch (error) {
    log.error({ err: error }, 'socks5: destroying the upstream threw');
  }
}
