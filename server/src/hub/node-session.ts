/**
 * One connected exit node: the tunnel connection the hub runs over the node's upgraded
 * socket (HTTP/2 or the multiplexer, as the agent's version speaks), its heart-beat,
 * and the streams opened through it.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type Heartbeat,
  type NodeHello,
  startHeartbeat,
  type TunnelLogger,
  type TunnelProtocol,
} from '@ipcola/shared/protocol';
import { tunnelError } from '@ipcola/shared/tunnel-errors';
import type { Carrier, Opening } from './carriers/carrier.ts';
import { H2Carrier } from './carriers/h2-carrier.ts';
import { MuxCarrier } from './carriers/mux-carrier.ts';
import {
  awaitConnectAnswer,
  checkTarget,
  PROBE_TARGET,
  requestConnect,
  type StreamTarget,
} from './connect-stream.ts';
import type { ExitProof, ExitProofs } from './exit-proofs.ts';
import { type OpenVerdict, StreamHealth, type StreamHealthPolicy } from './stream-health.ts';

export type { StreamTarget } from './connect-stream.ts';

/** Why a node left the registry. */
export type NodeDownReason =
  | 'closed'
  | 'error'
  | 'ping_timeout'
  | 'handshake_timeout'
  /** Out of the pool after failed stream opens; still connected, and probed. */
  | 'stream_failures'
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
  /** Each announced exit IP and whether it is proven (only verified ones carry traffic). */
  readonly exits: readonly ExitProof[];
  /** What its tunnel speaks: 'mux' from v2 agents, 'h2' from older ones. */
  readonly protocol: TunnelProtocol;
}

export interface NodeSessionOptions {
  readonly nodeId: string;
  readonly hello: NodeHello;
  /** The agent process's id from its Upgrade request, when it sent one. */
  readonly instance: string | undefined;
  /** What the tunnel speaks after the 101. */
  readonly protocol: TunnelProtocol;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly openTimeoutMs: number;
  readonly streamHealth: StreamHealthPolicy;
  readonly logger: TunnelLogger;
  /** Which of its exit IPs the node has proven. */
  readonly proofs: ExitProofs;
}

interface NodeSessionEvents {
  /** The node's settings arrived: it speaks the protocol and can take streams. */
  ready: [];
  /** The node sent GOAWAY (it is draining): no new streams, open ones carry on. */
  goaway: [];
  /**
   * destroy() was called: the node is done for at once, although an HTTP/2 session may
   * not close for a while (Node waits for a write in progress, which a node that stopped
   * reading never lets finish).
   */
  down: [reason: NodeDownReason, error: Error | undefined];
  /** Its stream opens kept failing: out of the pool until a probe is answered. */
  ejected: [];
  /** A probe was answered: back in the pool. */
  restored: [];
  close: [reason: NodeDownReason, error: Error | undefined];
}

export class NodeSession extends EventEmitter<NodeSessionEvents> {
  readonly nodeId: string;
  readonly hello: NodeHello;
  readonly instance: string | undefined;
  readonly connectedAt = new Date();
  readonly remoteAddress: string | undefined;
  #activeStreams = 0;
  #rttMs: number | undefined;
  readonly #exitIps: ReadonlySet<string>;
  readonly #carrier: Carrier;
  readonly #socket: Duplex;
  readonly #options: NodeSessionOptions;
  readonly #log: TunnelLogger;
  readonly #health: StreamHealth;
  #heartbeat: Heartbeat | undefined;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  #downReason: NodeDownReason | undefined;
  #lastError: Error | undefined;
  #settled = false;
  #ready = false;

  constructor(options: NodeSessionOptions) {
    super();
    this.#options = options;
    this.nodeId = options.nodeId;
    this.hello = options.hello;
    this.instance = options.instance;
    this.#exitIps = new Set(options.hello.exitIps);
    this.#log = options.logger;
    this.#health = new StreamHealth(options.streamHealth);
    this.#socket = options.socket;
    const socket = options.socket as Socket;
    this.remoteAddress = socket.remoteAddress;
    // PINGs and stream HEADERS are small frames that must not wait for Nagle.
    socket.setNoDelay?.(true);
    // Bytes the node sent right behind our 101 (its SETTINGS) were read with the request.
    if (options.head.length > 0) socket.unshift(options.head);

    this.#carrier =
      options.protocol === 'mux'
        ? new MuxCarrier(socket)
        : new H2Carrier(socket, options.hello.maxStreams);
    // Node hands the socket's already-buffered bytes to a new HTTP/2 session on the next
    // tick and throws (reading 'receive' of undefined) if the session was destroyed
    // before: closing waits for that tick.
    process.nextTick(() => {
      this.#settled = true;
    });
    this.#watchCarrier();
    // The HTTP server made this socket with allowHalfOpen, so the node's FIN alone would
    // leave an HTTP/2 session open until PINGs failed.
    socket.once('end', () => this.destroy('closed'));
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /** Out of the pool because its stream opens kept failing (it is still connected). */
  get ejected(): boolean {
    return this.#health.ejected;
  }

  /** Whether destroy() was called or the session is closing or closed. */
  get ending(): boolean {
    return this.#downReason !== undefined || this.#carrier.ending;
  }

  /** The node's SETTINGS arrived ('ready' was emitted). */
  get ready(): boolean {
    return this.#ready;
  }

  get proofs(): ExitProofs {
    return this.#options.proofs;
  }

  info(): ConnectedNode {
    return {
      nodeId: this.nodeId,
      hello: this.hello,
      connectedAt: this.connectedAt,
      remoteAddress: this.remoteAddress,
      activeStreams: this.#activeStreams,
      rttMs: this.#rttMs,
      exits: this.#options.proofs.list(),
      protocol: this.#options.protocol,
    };
  }

  /** Opens a CONNECT stream to `target` through the node; resolves once the node says 200. */
  open(target: StreamTarget): Promise<Duplex> {
    const checked = checkTarget(target, this.nodeId, this.#exitIps);
    if ('error' in checked) return Promise.reject(checked.error);
    if (target.signal?.aborted) return Promise.reject(target.signal.reason);
    if (this.#carrier.ending) {
      return Promise.reject(tunnelError('exit_failed', `node ${this.nodeId} is going away`));
    }
    // Past the node's limit, HTTP/2 would queue the stream until another closes (and the
    // open would end as a misleading target_timeout); the multiplexer's node would reset it.
    const capacity = this.#carrier.maxStreams ?? this.hello.maxStreams;
    if (this.#activeStreams >= capacity) {
      return Promise.reject(
        tunnelError('exit_failed', `node ${this.nodeId} carries ${capacity} streams already`),
      );
    }
    let opening: Opening;
    try {
      opening = requestConnect(this.#carrier, target, checked.exitIp);
    } catch (error) {
      return Promise.reject(
        tunnelError('exit_failed', `node ${this.nodeId} refused a new stream`, { cause: error }),
      );
    }
    this.#track(opening.stream, target.streamLabel);
    return awaitConnectAnswer(
      opening,
      target,
      this.nodeId,
      this.#options.openTimeoutMs,
      (verdict) => this.#judge(verdict),
    );
  }

  /**
   * Stops new streams (GOAWAY) and lets open ones finish. `why` travels in the GOAWAY,
   * for the node's log only.
   */
  close(why?: string): void {
    if (!this.#settled) {
      process.nextTick(() => this.close(why));
      return;
    }
    this.#carrier.close(why);
  }

  /**
   * Ends the node now: 'down' at once, then the tunnel connection and its socket. The
   * socket is destroyed as well because Node closes an HTTP/2 session only once a write
   * in progress has finished, and a node that stopped reading never lets it.
   */
  destroy(reason: NodeDownReason, error?: Error): void {
    const first = this.#downReason === undefined;
    this.#downReason ??= reason;
    if (error) this.#lastError ??= error;
    clearTimeout(this.#probeTimer);
    const cut = () => {
      this.#carrier.destroy();
      this.#socket.destroy();
    };
    if (this.#settled) cut();
    else process.nextTick(cut);
    if (first) this.emit('down', reason, this.#lastError);
  }

  #judge(verdict: OpenVerdict): void {
    // A node going away fails its opens; that is not what this counts.
    if (this.ending || !this.#health.record(verdict)) return;
    const delayMs = this.#health.backoffMs();
    this.#log.warn(
      {
        nodeId: this.nodeId,
        failures: this.#options.streamHealth.failureLimit,
        probeInMs: delayMs,
      },
      'node out of the pool: its stream opens keep failing',
    );
    this.emit('ejected');
    this.#scheduleProbe(delayMs);
  }

  #scheduleProbe(delayMs: number): void {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = setTimeout(() => void this.#probeAndJudge(), delayMs);
    this.#probeTimer.unref();
  }

  async #probeAndJudge(): Promise<void> {
    const verdict = await this.#probe();
    if (this.ending) return;
    if (this.#health.probed(verdict)) {
      this.#log.info({ nodeId: this.nodeId }, 'node back in the pool: it answered a probe');
      this.emit('restored');
      return;
    }
    const nextMs = this.#health.backoffMs();
    this.#log.info({ nodeId: this.nodeId, probeInMs: nextMs }, 'node probe failed');
    this.#scheduleProbe(nextMs);
  }

  /** Opens a stream the node must refuse by its policy; 'answered' when it did. */
  async #probe(): Promise<OpenVerdict> {
    if (this.ending) return 'failed';
    const exitIp = this.hello.exitIps[0] as string;
    const target: StreamTarget = { ...PROBE_TARGET, exitIp, streamLabel: 'ipcola-health-probe' };
    let verdict: OpenVerdict = 'failed';
    try {
      const opening = requestConnect(this.#carrier, target, exitIp);
      this.#track(opening.stream, target.streamLabel);
      const opened = await awaitConnectAnswer(
        opening,
        target,
        this.nodeId,
        this.#options.pingTimeoutMs,
        (judged) => {
          verdict = judged;
        },
      );
      opened.destroy();
    } catch {
      // The verdict says what happened; the error itself is the node's refusal.
    }
    return verdict;
  }

  #watchCarrier(): void {
    const carrier = this.#carrier;
    const { pingIntervalMs, pingTimeoutMs } = this.#options;
    // The node has as long as one PING to show it speaks the protocol.
    this.#handshakeTimer = setTimeout(() => this.destroy('handshake_timeout'), pingTimeoutMs);
    this.#handshakeTimer.unref();
    carrier.once('ready', () => {
      clearTimeout(this.#handshakeTimer);
      this.#heartbeat = startHeartbeat(carrier.pingable, {
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
      this.#ready = true;
      this.emit('ready');
    });
    carrier.on('goaway', () => this.emit('goaway'));
    carrier.on('error', (error) => {
      this.#lastError ??= error;
      this.#log.debug({ nodeId: this.nodeId, err: error }, 'node session error');
    });
    carrier.once('close', () => {
      clearTimeout(this.#handshakeTimer);
      clearTimeout(this.#probeTimer);
      this.#heartbeat?.stop();
      const reason = this.#downReason ?? (this.#lastError ? 'error' : 'closed');
      this.emit('close', reason, this.#lastError);
    });
  }

  #track(stream: Duplex, label: string | undefined): void {
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
