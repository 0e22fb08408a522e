/**
 * One connected exit node: the HTTP/2 client session the hub runs over the node's
 * upgraded socket, its heart-beat, and the CONNECT streams opened through it.
 */
import { EventEmitter } from 'node:events';
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type Heartbeat,
  MAX_SESSION_MEMORY_MB,
  type NodeHello,
  startHeartbeat,
  type TunnelLogger,
  tunnelError,
  tunnelSettings,
  widenConnectionWindow,
} from '@ipcola/agent/protocol';
import {
  awaitConnectAnswer,
  checkTarget,
  requestConnect,
  type StreamTarget,
} from './connect-stream.ts';

export type { StreamTarget } from './connect-stream.ts';

/** Why a node left the registry. */
export type NodeDownReason =
  | 'closed'
  | 'error'
  | 'ping_timeout'
  | 'handshake_timeout'
  | 'replaced'
  | 'draining'
  | 'removed'
  | 'hub_closing';

/** A node as the gateway sees it, at the moment it was asked. */
export interface ConnectedNode {
  readonly nodeId: string;
  readonly hello: NodeHello;
  readonly connectedAt: Date;
  readonly remoteAddress: string | undefined;
  /** CONNECT streams open or being opened through this node now. */
  readonly activeStreams: number;
  /** Last measured PING round trip; undefined until the first one. */
  readonly rttMs: number | undefined;
}

export interface NodeSessionOptions {
  readonly nodeId: string;
  readonly hello: NodeHello;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly openTimeoutMs: number;
  readonly logger: TunnelLogger;
}

interface NodeSessionEvents {
  /** The node's SETTINGS arrived: it speaks HTTP/2 and can take streams. */
  ready: [];
  /** The node sent GOAWAY (it is draining): no new streams, open ones carry on. */
  goaway: [];
  close: [reason: NodeDownReason, error: Error | undefined];
}

export class NodeSession extends EventEmitter<NodeSessionEvents> {
  readonly nodeId: string;
  readonly hello: NodeHello;
  readonly connectedAt = new Date();
  readonly remoteAddress: string | undefined;
  #activeStreams = 0;
  #rttMs: number | undefined;
  readonly #exitIps: ReadonlySet<string>;
  readonly #session: ClientHttp2Session;
  readonly #options: NodeSessionOptions;
  readonly #log: TunnelLogger;
  #heartbeat: Heartbeat | undefined;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #downReason: NodeDownReason | undefined;
  #lastError: Error | undefined;
  #settled = false;

  constructor(options: NodeSessionOptions) {
    super();
    this.#options = options;
    this.nodeId = options.nodeId;
    this.hello = options.hello;
    this.#exitIps = new Set(options.hello.exitIps);
    this.#log = options.logger;
    const socket = options.socket as Socket;
    this.remoteAddress = socket.remoteAddress;
    // PINGs and stream HEADERS are small frames that must not wait for Nagle.
    socket.setNoDelay?.(true);
    // Bytes the node sent right behind our 101 (its SETTINGS) were read with the request.
    if (options.head.length > 0) socket.unshift(options.head);

    // The authority is only a default for requests; every CONNECT carries its own.
    this.#session = connect('http://exit-node.invalid', {
      createConnection: () => socket,
      settings: tunnelSettings(),
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      // Until the node's SETTINGS say otherwise, do not open more than it announced.
      peerMaxConcurrentStreams: options.hello.maxStreams,
    });
    // Node hands the socket's already-buffered bytes to a new session on the next tick
    // and throws (reading 'receive' of undefined) if the session was destroyed before:
    // closing waits for that tick.
    process.nextTick(() => {
      this.#settled = true;
    });
    this.#watchSession();
    // HTTP/2 has no half-closed connection, but the HTTP server made this socket with
    // allowHalfOpen, so the node's FIN alone would leave the session open until PINGs
    // failed.
    socket.once('end', () => this.destroy('closed'));
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  info(): ConnectedNode {
    return {
      nodeId: this.nodeId,
      hello: this.hello,
      connectedAt: this.connectedAt,
      remoteAddress: this.remoteAddress,
      activeStreams: this.#activeStreams,
      rttMs: this.#rttMs,
    };
  }

  /** Opens a CONNECT stream to `target` through the node; resolves once the node says 200. */
  open(target: StreamTarget): Promise<Duplex> {
    const checked = checkTarget(target, this.nodeId, this.#exitIps);
    if ('error' in checked) return Promise.reject(checked.error);
    if (target.signal?.aborted) return Promise.reject(target.signal.reason);
    if (this.#session.closed || this.#session.destroyed) {
      return Promise.reject(tunnelError('exit_failed', `node ${this.nodeId} is going away`));
    }
    // Past the node's SETTINGS_MAX_CONCURRENT_STREAMS, Node would queue the stream until
    // another closes, and the open would end as a misleading target_timeout.
    const capacity = this.#session.remoteSettings.maxConcurrentStreams ?? this.hello.maxStreams;
    if (this.#activeStreams >= capacity) {
      return Promise.reject(
        tunnelError('exit_failed', `node ${this.nodeId} carries ${capacity} streams already`),
      );
    }
    let stream: ClientHttp2Stream;
    try {
      stream = requestConnect(this.#session, target, checked.exitIp);
    } catch (error) {
      return Promise.reject(
        tunnelError('exit_failed', `node ${this.nodeId} refused a new stream`, { cause: error }),
      );
    }
    this.#track(stream, target.streamLabel);
    return awaitConnectAnswer(stream, target, this.nodeId, this.#options.openTimeoutMs);
  }

  /** Stops new streams (GOAWAY) and lets open ones finish. */
  close(): void {
    if (!this.#settled) {
      process.nextTick(() => this.close());
      return;
    }
    if (!this.#session.closed) this.#session.close();
  }

  destroy(reason: NodeDownReason, error?: Error): void {
    this.#downReason ??= reason;
    if (error) this.#lastError ??= error;
    if (this.#settled) this.#session.destroy();
    else process.nextTick(() => this.#session.destroy());
  }

  #watchSession(): void {
    const session = this.#session;
    const { pingIntervalMs, pingTimeoutMs } = this.#options;
    // The node has as long as one PING to show it speaks HTTP/2.
    this.#handshakeTimer = setTimeout(() => this.destroy('handshake_timeout'), pingTimeoutMs);
    this.#handshakeTimer.unref();
    session.once('connect', () => widenConnectionWindow(session));
    session.once('remoteSettings', () => {
      clearTimeout(this.#handshakeTimer);
      this.#heartbeat = startHeartbeat(session, {
        intervalMs: pingIntervalMs,
        timeoutMs: pingTimeoutMs,
        onDead: (error) => {
          this.#log.warn({ nodeId: this.nodeId, err: error }, 'node stopped answering PINGs');
          this.destroy('ping_timeout', error);
        },
        onRtt: (rttMs) => {
          this.#rttMs = rttMs;
        },
      });
      this.emit('ready');
    });
    session.on('goaway', () => this.emit('goaway'));
    session.on('error', (error) => {
      this.#lastError ??= error;
      this.#log.debug({ nodeId: this.nodeId, err: error }, 'node session error');
    });
    session.once('close', () => {
      clearTimeout(this.#handshakeTimer);
      this.#heartbeat?.stop();
      const reason = this.#downReason ?? (this.#lastError ? 'error' : 'closed');
      this.emit('close', reason, this.#lastError);
    });
  }

  #track(stream: ClientHttp2Stream, label: string | undefined): void {
    this.#activeStreams += 1;
    // Whoever holds the stream later may not listen for errors at every moment (between
    // our resolve and their splice, say); an unheard 'error' would crash the process.
    stream.on('error', (error) => {
      this.#log.debug({ nodeId: this.nodeId, stream: label, err: error }, 'stream error');
    });
    stream.once('close', () => {
      this.#activeStreams -= 1;
    });
  }
}
