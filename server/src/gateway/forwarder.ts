/**
 * Plain-HTTP forwarding through exits, on undici. Upstream connections (streams through
 * an exit to an origin) belong to the client connection that opened them: one undici
 * Client per client connection, key and session, exit and origin (upstreams-by-client.ts),
 * closed when the client connection closes. A client connection's keep-alive requests
 * reuse its upstream; nothing else ever does.
 *
 * Why per client connection and not a pool per exit (as before) or per key and session:
 * an origin may bind state to the connection (NTLM and Negotiate authenticate the
 * connection, not the request), and a shared pool answered one account's private data to
 * another account's request. A pool per key and session would still hand one connection's
 * authenticated upstream to another connection of the key, which may be another end user
 * of a customer that resells or runs many clients on one key; and a request that leaves an
 * upstream out of step (a desync) harms only the client connection that sent it. It is
 * also what a client talking to the origin directly gets: its own connection. One Client
 * holds one connection and sends one request at a time, so the next request of a client
 * connection (pipelined or not) waits for that connection instead of opening a second one.
 *
 * Measured (indicative: a shared 2-core machine; `npm run bench -- --only forward`, run
 * back to back with 1505bec's pooled forwarder): 1 KB over 50 keep-alive client
 * connections did 10,037 and 8,940 req/s before, 8,883 and 9,768 after, at 105-110 µs of
 * gateway CPU per request either way: keep-alive clients keep their rate (ad hoc, 20
 * keep-alive clients: 95-99 µs before, 106-107 µs after, the upstream-socket.ts layer
 * included). What it costs is clients that open a connection per request (`Connection:
 * close`): each now opens a stream and an origin connection through the exit where the
 * pool reused one. Ad hoc, 20 such clients against one agent: 3,100-3,300 req/s and 250 µs
 * of gateway CPU per request before, 360-1,500 req/s and 475-700 µs after; the exit's
 * share grows with the TIME_WAIT sockets its closes leave on the exit IP (its bind() looks
 * for a free port among them: its system time per request was 115 µs with 8,000 of them,
 * 1.4 ms with 11,400).
 *
 * Why undici and not http-proxy-3 over an http.Agent: forwarding 1 KB responses over
 * 50 keep-alive connections on one core, undici's client did 27.6k req/s where
 * http-proxy-3 did 12.0k (wrk, same target, same process shape), and the gateway's
 * forwarding path is mostly the HTTP client's cost.
 *
 * The request is re-framed by undici (Content-Length or chunked) and the response by
 * Node's ServerResponse; hop-by-hop headers of either side never cross.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SpliceGate } from '@ipcola/shared/splice';
import type { Dispatcher } from 'undici';
import { ipcolaError } from '../errors/index.ts';
import type { Target } from './connector.ts';
import { asProxyRefusal } from './refusal.ts';
import { UpstreamsByClient } from './upstreams-by-client.ts';

/** Opens a stream to an origin through one exit; the stream is the connection undici uses. */
export type OpenThroughExit = (target: Target) => Promise<Duplex>;

export interface ForwardTarget {
  /** `http://host[:port]` as the client named it (IPv6 in brackets). */
  origin: string;
  /** The request target in origin form, exactly as the client wrote it. */
  path: string;
  /** The Host header the target gets. */
  authority: string;
}

/** Whose request goes through which exit: an upstream connection carries one route's requests only. */
export interface ForwardRoute {
  exitId: string;
  /** The key the request was admitted for. */
  keyId: string;
  /** Its sticky session, if it named one. */
  sessionId: string | null;
}

export interface ForwarderOptions {
  /** Bounds the wait for the response head and for each chunk of its body. */
  idleTimeoutMs: number;
}

/**
 * Upstreams one client connection keeps at once (see UpstreamsByClientOptions). Idle ones
 * are not counted against the key's connections, so this bounds what a key can hold at
 * exits to 8 times the client connections it was admitted for; evicting one costs only a
 * new connection through the exit when that origin comes back.
 */
export const UPSTREAMS_PER_CLIENT = 8;

export interface Forwarder {
  /**
   * Sends `req` to the target through the exit and streams the answer into `res`, on an
   * upstream connection that only `req.socket` (the client connection) ever uses.
   * Resolves once the answer is complete or the client went away; rejects with the
   * reason when no answer could be started (the caller sends the refusal). A failure
   * after the answer started destroys `res`, so the client sees a cut, not an end.
   * Every chunk of the request body and of the answer passes `gate` before it goes on;
   * when the gate refuses, the client connection is reset.
   */
  forward(
    route: ForwardRoute,
    open: OpenThroughExit,
    req: IncomingMessage,
    res: ServerResponse,
    target: ForwardTarget,
    gate: SpliceGate,
  ): Promise<void>;
  /** Closes the exit's pooled connections (the exit went away). */
  drop(exitId: string): void;
  close(): Promise<void>;
}

/** Headers that belong to one hop and never cross the proxy (RFC 9110 section 7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  // Framing is redone on each side: undici frames the request, Node the response.
  'transfer-encoding',
  // Asked of the proxy (exit-details.ts), not of the target.
  'x-ipcola-exit-details',
]);

/** undici's error codes that mean the target was too slow; the rest mean the exit path failed. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function createForwarder(options: ForwarderOptions): Forwarder {
  const upstreams = new UpstreamsByClient({
    idleTimeoutMs: options.idleTimeoutMs,
    maxPerClient: UPSTREAMS_PER_CLIENT,
  });

  return {
    forward(route, open, req, res, target, gate) {
      const dispatcher = upstreams.dispatcherFor(req.socket, route, target.origin, open);
      // The client connection is gone: there is nobody to answer.
      if (!dispatcher) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const relay = new ResponseRelay(res, gate, resolve, reject);
        const hasBody =
          req.headers['transfer-encoding'] !== undefined ||
          (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
        dispatcher.dispatch(
          {
            origin: target.origin,
            path: target.path,
            method: req.method ?? 'GET',
            headers: requestHeaders(req.headers, target.authority),
            // undici sends any async iterable as a body; its types name only Readable.
            body: hasBody ? (gatedBody(req, gate) as unknown as IncomingMessage) : null,
          },
          relay,
        );
      });
    },
    drop: (exitId) => upstreams.dropExit(exitId),
    close: () => upstreams.close(),
  };
}

/** Streams one undici response into the client's ServerResponse, with backpressure. */
class ResponseRelay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  readonly #gate: SpliceGate;
  readonly #resolve: () => void;
  readonly #reject: (error: Error) => void;
  #controller: Dispatcher.DispatchController | undefined;
  #settled = false;
  /** Chunks that arrived while one waited for the gate, in order. */
  readonly #backlog: Buffer[] = [];
  #waitingForGate = false;
  #endAfterGate = false;

  constructor(
    res: ServerResponse,
    gate: SpliceGate,
    resolve: () => void,
    reject: (error: Error) => void,
  ) {
    this.#res = res;
    this.#gate = gate;
    this.#resolve = resolve;
    this.#reject = reject;
    res.once('close', this.#onClientGone);
    res.on('drain', this.#onDrain);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#res.destroyed) controller.abort(new Error('the client went away'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    // 1xx: Node answers the client's Expect itself; undici keeps waiting for the final head.
    if (statusCode < 200) return;
    const res = this.#res;
    const out = withoutHopByHop(headers);
    out.connection = res.shouldKeepAlive ? 'keep-alive' : 'close';
    if (statusMessage) res.statusMessage = statusMessage;
    res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#waitingForGate) {
      this.#backlog.push(chunk);
      controller.pause();
      return;
    }
    this.#pass(controller, chunk);
  }

  /** Writes a chunk the gate lets through, or waits for it (paused) with the rest queued. */
  #pass(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const passed = this.#gate.take(chunk.length);
    if (passed === true) {
      if (!this.#res.write(chunk)) controller.pause();
      return;
    }
    this.#waitingForGate = true;
    controller.pause();
    passed.then(
      (allowed) => this.#afterGate(controller, chunk, allowed),
      () => this.#afterGate(controller, chunk, false),
    );
  }

  #afterGate(controller: Dispatcher.DispatchController, chunk: Buffer, allowed: boolean): void {
    this.#waitingForGate = false;
    if (this.#settled) return;
    if (!allowed) {
      // Out of allowance mid-answer: the client must see an abort, not a short body.
      this.#finish();
      controller.abort(ipcolaError('quota_exhausted'));
      const socket = this.#res.socket;
      if (socket && !socket.destroyed) socket.resetAndDestroy();
      this.#res.destroy();
      this.#resolve();
      return;
    }
    let writable = this.#res.write(chunk);
    while (this.#backlog.length > 0 && !this.#waitingForGate) {
      this.#pass(controller, this.#backlog.shift() as Buffer);
      writable = !this.#res.writableNeedDrain;
    }
    if (this.#waitingForGate) return;
    if (this.#endAfterGate) this.onResponseEnd();
    else if (writable) controller.resume();
  }

  onResponseEnd(): void {
    if (this.#waitingForGate || this.#backlog.length > 0) {
      this.#endAfterGate = true;
      return;
    }
    this.#res.end();
    this.#finish();
    this.#resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    this.#finish();
    const res = this.#res;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      this.#resolve();
      return;
    }
    this.#reject(asForwardingError(error));
  }

  readonly #onDrain = () => {
    if (this.#controller?.paused && !this.#waitingForGate) this.#controller.resume();
  };

  readonly #onClientGone = () => {
    if (this.#settled) return;
    this.#controller?.abort(new Error('the client went away'));
  };

  #finish(): void {
    this.#settled = true;
    this.#res.off('close', this.#onClientGone);
    this.#res.off('drain', this.#onDrain);
  }
}

/** The request body, each chunk let through by the gate before undici sends it on. */
async function* gatedBody(body: IncomingMessage, gate: SpliceGate): AsyncGenerator<Buffer> {
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const passed = gate.take(chunk.length);
    if (passed !== true && !(await passed)) {
      const socket = body.socket;
      if (!socket.destroyed) socket.resetAndDestroy();
      throw ipcolaError('quota_exhausted');
    }
    yield chunk;
  }
}

/** The client's headers minus hop-by-hop ones, with the target's Host. */
function requestHeaders(
  headers: IncomingHttpHeaders,
  authority: string,
): Record<string, string | string[]> {
  const out = withoutHopByHop(headers);
  // Node answered any Expect: 100-continue already; undici would refuse the header.
  delete out.expect;
  out.host = authority;
  return out;
}

function withoutHopByHop(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  // A copy of the set only when Connection names more headers: not on every request.
  const connection = headers.connection;
  let listed: ReadonlySet<string> = HOP_BY_HOP;
  if (connection !== undefined) {
    const more = new Set(HOP_BY_HOP);
    for (const name of String(connection).split(',')) more.add(name.trim().toLowerCase());
    listed = more;
  }
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !listed.has(name)) out[name] = value;
  }
  return out;
}

/** Our own refusals pass on; undici's errors are mapped by code, never by message. */
function asForwardingError(error: Error): Error {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) {
    return ipcolaError('target_timeout', undefined, { cause: error });
  }
  return asProxyRefusal(error);
}
