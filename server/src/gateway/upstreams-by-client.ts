/**
 * The upstream connections of plain-HTTP forwarding, owned by the client connection that
 * opened them: one undici Client (one connection at a time, one request at a time) per
 * client connection, key and session, exit and origin. Nothing is pooled across client
 * connections, so no two customers (and no two connections of one customer) ever share a
 * connection to an origin, and an origin that authenticates the connection (NTLM,
 * Negotiate) answers only the client connection that authenticated it. See forwarder.ts
 * for why and what it costs.
 */
import type { Socket } from 'node:net';
import { Client } from 'undici';
import type { ForwardRoute, OpenThroughExit } from './forwarder.ts';
import { UpstreamSocket } from './upstream-socket.ts';

export interface UpstreamsByClientOptions {
  /** Bounds the wait for the response head and for each chunk of its body. */
  idleTimeoutMs: number;
  /**
   * Upstreams one client connection keeps at once. A browser reuses its proxy connection
   * for every origin of a page, and without a session each request may leave through
   * another exit, so a client connection can reach many (exit, origin) pairs; past this
   * bound the least recently used one is closed once its request is done.
   */
  maxPerClient: number;
}

interface Upstream {
  client: Client;
  exitId: string;
  /** The latest opener: it carries the latest exit record. */
  opener: { current: OpenThroughExit };
}

export class UpstreamsByClient {
  readonly #options: UpstreamsByClientOptions;
  /** Per client connection, its upstreams by key, session, exit and origin, least recently used first. */
  readonly #byClient = new Map<Socket, Map<string, Upstream>>();

  constructor(options: UpstreamsByClientOptions) {
    this.#options = options;
  }

  /**
   * The dispatcher for a request of `clientSocket` to `origin` through the exit; null when
   * the client connection is already gone (nothing may be opened for it any more).
   */
  dispatcherFor(
    clientSocket: Socket,
    route: ForwardRoute,
    origin: string,
    open: OpenThroughExit,
  ): Client | null {
    let upstreams = this.#byClient.get(clientSocket);
    if (!upstreams) {
      // After 'close' nothing would ever close what we open here.
      if (clientSocket.destroyed) return null;
      upstreams = new Map();
      this.#byClient.set(clientSocket, upstreams);
      clientSocket.once('close', () => this.#closeClient(clientSocket));
    }
    // A client connection may carry requests of several keys (a proxy in front of us
    // pooling its own users' requests): each key and session gets its own upstreams.
    const name = `${route.keyId}\n${route.sessionId ?? ''}\n${route.exitId}\n${origin}`;
    const existing = upstreams.get(name);
    if (existing) {
      existing.opener.current = open;
      upstreams.delete(name);
      upstreams.set(name, existing);
      return existing.client;
    }
    if (upstreams.size >= this.#options.maxPerClient) {
      const [oldestName, oldest] = upstreams.entries().next().value as [string, Upstream];
      upstreams.delete(oldestName);
      // close(), not destroy(): a pipelined request still running on it finishes first.
      oldest.client.close().catch(() => {});
    }
    const opener = { current: open };
    const client = new Client(origin, {
      // One connection, one request at a time: the next request of this client connection
      // waits for it instead of opening a second connection (which would lose NTLM state).
      pipelining: 1,
      headersTimeout: this.#options.idleTimeoutMs,
      bodyTimeout: this.#options.idleTimeoutMs,
      connect(connectOptions, callback) {
        const host = connectOptions.hostname.replace(/^\[(.*)\]$/, '$1');
        const port = Number(connectOptions.port) || 80;
        opener.current({ host, port }).then(
          // undici drives any duplex the way it drives a socket (read, write, cork, destroy);
          // this one ends the stream through the exit without a reset when it can.
          (stream) => callback(null, new UpstreamSocket(stream, atRest) as unknown as Socket),
          (error: Error) => callback(error, null),
        );
      },
    });
    // No request written and unanswered: the connection may end without a reset.
    const atRest = () => client.stats.running === 0;
    upstreams.set(name, { client, exitId: route.exitId, opener });
    return client;
  }

  /** Closes every upstream through the exit (the exit went away). */
  dropExit(exitId: string): void {
    for (const upstreams of this.#byClient.values()) {
      for (const [name, upstream] of upstreams) {
        if (upstream.exitId !== exitId) continue;
        upstreams.delete(name);
        upstream.client.destroy().catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    const clients = [...this.#byClient.values()].flatMap((upstreams) =>
      [...upstreams.values()].map((upstream) => upstream.client),
    );
    this.#byClient.clear();
    await Promise.allSettled(clients.map((client) => client.destroy()));
  }

  /** The client connection closed: its upstreams close with it, whatever they were doing. */
  #closeClient(clientSocket: Socket): void {
    const upstreams = this.#byClient.get(clientSocket);
    if (!upstreams) return;
    this.#byClient.delete(clientSocket);
    for (const upstream of upstreams.values()) upstream.client.destroy().catch(() => {});
  }
}
