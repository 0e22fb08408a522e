/**
 * The agent's end of one tunnel connection: an HTTP/2 server session over the socket
 * it dialled, answering the hub's CONNECT streams by opening egress connections and
 * splicing them to the streams.
 */
import { EventEmitter } from 'node:events';
import {
  createServer,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import {
  canonicalIp,
  ERROR_HEADER,
  EXIT_IP_HEADER,
  type Heartbeat,
  MAX_SESSION_MEMORY_MB,
  type NodeHello,
  parseAuthority,
  STREAM_LABEL_HEADER,
  startHeartbeat,
  type TunnelLogger,
  tunnelSettings,
  widenConnectionWindow,
} from '@ipcola/shared/protocol';
import { spliceStreams } from '@ipcola/shared/splice';
import { type TunnelErrorCode, tunnelCodeOf, tunnelStatusOf } from '@ipcola/shared/tunnel-errors';

export interface EgressTarget {
  readonly host: string;
  readonly port: number;
  /** The exit IP to bind the connection to; always one of the hello's exitIps. */
  readonly exitIp: string;
  /** The hub's label for the stream, for logs. */
  readonly streamLabel?: string;
}

/**
 * Opens the connection to the target (exit policy, DNS, binding the exit IP). Rejects
 * with an error whose `code` is a tunnel error code; any other rejection is answered as
 * exit_failed. `signal` aborts when the hub gave up on the stream meanwhile.
 */
export type OpenEgress = (target: EgressTarget, signal: AbortSignal) => Promise<Duplex>;

export interface AgentSessionOptions {
  readonly socket: Socket;
  readonly hello: NodeHello;
  readonly openEgress: OpenEgress;
  readonly idleTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly logger: TunnelLogger;
}

interface AgentSessionEvents {
  /** The hub sent GOAWAY: no new streams will come on this connection. */
  goaway: [reason: string | undefined];
  close: [error: Error | undefined];
}

export class AgentSession extends EventEmitter<AgentSessionEvents> {
  readonly #options: AgentSessionOptions;
  readonly #log: TunnelLogger;
  readonly #session: ServerHttp2Session;
  readonly #exitIps: ReadonlySet<string>;
  #heartbeat: Heartbeat | undefined;
  #activeStreams = 0;
  #lastError: Error | undefined;
  #settled = false;

  constructor(options: AgentSessionOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
    this.#exitIps = new Set(options.hello.exitIps);
    this.#session = serveHttp2(options.socket, options.hello.maxStreams);
    // Node hands the socket's already-buffered bytes (the hub's preface, unshifted) to
    // a new session on the next tick and throws (reading 'receive' of undefined) if the
    // session was destroyed before: closing waits for that tick.
    process.nextTick(() => {
      this.#settled = true;
    });
    this.#watch();
    // HTTP/2 has no half-closed connection: the hub's FIN ends the session, whatever
    // allowHalfOpen the socket was made with.
    options.socket.once('end', () => this.destroy());
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /** GOAWAY: refuse new streams, close once the open ones are done. */
  close(): void {
    if (!this.#settled) {
      process.nextTick(() => this.close());
      return;
    }
    if (!this.#session.closed) this.#session.close();
  }

  destroy(error?: Error): void {
    if (error) this.#lastError ??= error;
    if (this.#settled) this.#session.destroy();
    else process.nextTick(() => this.#session.destroy());
  }

  #watch(): void {
    const session = this.#session;
    const { pingIntervalMs, pingTimeoutMs } = this.#options;
    session.once('connect', () => widenConnectionWindow(session));
    this.#heartbeat = startHeartbeat(session, {
      intervalMs: pingIntervalMs,
      timeoutMs: pingTimeoutMs,
      onDead: (error) => {
        this.#log.warn({ err: error }, 'the hub stopped answering PINGs');
        this.destroy(error);
      },
    });
    session.on('stream', (stream, headers) => {
      this.#serve(stream, headers).catch((error: unknown) => {
        this.#log.error({ err: error }, 'stream handling failed');
        stream.destroy();
      });
    });
    session.on('goaway', (_code, _lastStreamId, debug?: Buffer) =>
      this.emit('goaway', goawayReason(debug)),
    );
    session.on('error', (error) => {
      this.#lastError ??= error;
    });
    session.once('close', () => {
      this.#heartbeat?.stop();
      this.emit('close', this.#lastError);
    });
  }

  async #serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    // Errors are followed by 'close', which is what the code below acts on; an unheard
    // 'error' would crash the agent.
    stream.on('error', (error) => this.#log.debug({ err: error }, 'stream error'));
    this.#activeStreams += 1;
    stream.once('close', () => {
      this.#activeStreams -= 1;
    });
    if (this.#session.closed) {
      // Draining (a stream that crossed our GOAWAY): nothing was done, the hub may retry.
      answerRefusal(stream, 503, 'exit_failed');
      return;
    }
    const target = this.#readTarget(headers);
    if ('refusal' in target) {
      answerRefusal(stream, target.status, target.refusal);
      return;
    }

    // The hub resets the stream if it gives up (customer gone, its own timeout).
    const cancel = new AbortController();
    const onGone = () => cancel.abort(new Error('the hub cancelled the stream'));
    stream.once('close', onGone);
    let egress: Duplex;
    try {
      egress = await this.#options.openEgress(target, cancel.signal);
    } catch (error) {
      const code = tunnelCodeOf(error);
      this.#log.debug({ stream: target.streamLabel, code, err: error }, 'egress refused');
      answerRefusal(stream, tunnelStatusOf(code), code);
      return;
    } finally {
      stream.off('close', onGone);
    }
    if (stream.destroyed || stream.closed) {
      egress.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    spliceStreams(stream, egress, {
      idleTimeoutMs: this.#options.idleTimeoutMs,
      onEnd: (result) =>
        this.#log.debug(
          {
            stream: target.streamLabel,
            up: result.bytesAtoB,
            down: result.bytesBtoA,
            err: result.error,
          },
          'stream ended',
        ),
    });
  }

  #readTarget(
    headers: IncomingHttpHeaders,
  ): EgressTarget | { status: number; refusal: TunnelErrorCode } {
    if (headers[':method'] !== 'CONNECT') return { status: 405, refusal: 'exit_failed' };
    const authority = parseAuthority(headers[':authority'] ?? '');
    if (!authority) return { status: 400, refusal: 'target_unreachable' };
    const exitIpHeader = headers[EXIT_IP_HEADER];
    const exitIp = typeof exitIpHeader === 'string' ? canonicalIp(exitIpHeader) : null;
    // Only addresses this node announced: never bind what the hub made up.
    if (exitIp === null || !this.#exitIps.has(exitIp)) {
      return { status: 400, refusal: 'exit_failed' };
    }
    const label = headers[STREAM_LABEL_HEADER];
    return {
      host: authority.host,
      port: authority.port,
      exitIp,
      ...(typeof label === 'string' ? { streamLabel: label } : {}),
    };
  }
}

/** The hub's GOAWAY debug data as one printable line, for the log (it carries no meaning). */
function goawayReason(debug: Buffer | undefined): string | undefined {
  if (!debug || debug.length === 0) return undefined;
  return (
    debug
      .subarray(0, 200)
      .toString('utf8')
      .replace(/[^\x20-\x7e]+/g, ' ')
      .trim() || undefined
  );
}

function answerRefusal(stream: ServerHttp2Stream, status: number, code: TunnelErrorCode): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': status, [ERROR_HEADER]: code }, { endStream: true });
}

/**
 * Runs an HTTP/2 server session over an already connected socket. Node only builds
 * server sessions from a server's 'connection' event, and it sends TLS sockets that
 * did not negotiate `h2` by ALPN to its HTTP/1 fallback; ours negotiated HTTP/1.1 and
 * then upgraded, so it is marked as h2 first.
 */
function serveHttp2(socket: Socket, maxStreams: number): ServerHttp2Session {
  socket.setNoDelay(true);
  if (socket instanceof TLSSocket) socket.alpnProtocol = 'h2';
  const server = createServer({
    settings: tunnelSettings(maxStreams),
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
  });
  let session: ServerHttp2Session | undefined;
  server.once('session', (created) => {
    session = created;
  });
  server.emit('connection', socket);
  if (!session) throw new Error('node:http2 did not start a session on the tunnel socket');
  return session;
}
