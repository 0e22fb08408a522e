/** The v1 tunnel: an HTTP/2 server session over the socket the agent dialled. */
import { EventEmitter } from 'node:events';
import {
  createServer,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import {
  ERROR_HEADER,
  EXIT_IP_HEADER,
  MAX_SESSION_MEMORY_MB,
  STREAM_LABEL_HEADER,
  tunnelSettings,
  widenConnectionWindow,
} from '@ipcola/shared/protocol';
import type { IncomingStream, ServingCarrier, ServingCarrierEvents } from './carrier.ts';

export class H2ServingCarrier extends EventEmitter<ServingCarrierEvents> implements ServingCarrier {
  readonly #session: ServerHttp2Session;

  constructor(socket: Socket, maxStreams: number) {
    super();
    const session = serveHttp2(socket, maxStreams);
    this.#session = session;
    session.once('connect', () => widenConnectionWindow(session));
    session.on('stream', (stream, headers) => this.emit('stream', incoming(stream, headers)));
    session.on('goaway', (_code, _lastStreamId, debug?: Buffer) =>
      this.emit('goaway', goawayReason(debug)),
    );
    session.on('error', (error) => this.emit('error', error));
    session.once('close', () => this.emit('close'));
  }

  get closed(): boolean {
    return this.#session.closed;
  }

  get pingable(): ServerHttp2Session {
    return this.#session;
  }

  close(): void {
    if (!this.#session.closed) this.#session.close();
  }

  destroy(): void {
    this.#session.destroy();
  }
}

function incoming(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): IncomingStream {
  return {
    stream,
    isConnect: headers[':method'] === 'CONNECT',
    authority: headers[':authority'],
    exitIp: headers[EXIT_IP_HEADER],
    label: headers[STREAM_LABEL_HEADER],
    accept: () => stream.respond({ ':status': 200 }),
    refuse: (status, code) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      stream.respond({ ':status': status, [ERROR_HEADER]: code }, { endStream: true });
    },
  };
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
