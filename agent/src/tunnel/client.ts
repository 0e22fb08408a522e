/**
 * connectToHub: keeps an exit node attached to its hub. Dials out, serves the hub's
 * streams, and when the connection is lost or refused, dials again after a jittered,
 * growing delay; until drain() or close().
 *
 * Refusals: a hub that answers 4xx (bad token, bad hello, unknown protocol version)
 * is reported with a 'rejected' event and retried at a slow, fixed pace
 * (refusedRetryMs), because an operator may fix the token or upgrade the hub without
 * restarting the agent; giving up is the caller's choice (close() on 'rejected').
 * 5xx answers and network failures are retried with exponential back-off.
 *
 * One exception: 409 (REPLACED_STATUS) says that another agent presented the same node
 * token and replaced this one. Dialling again would only take the node back and start
 * a fight that never ends, so the client reports 'replaced' and drains instead.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import {
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PING_TIMEOUT_MS,
  encodeHello,
  type NodeHello,
  parseAuthority,
  REPLACED_STATUS,
  silentLogger,
  type TunnelLogger,
  validateHello,
} from '@ipcola/shared/protocol';
import { AgentSession, type OpenEgress } from './agent-session.ts';
import { backoffDelay } from './backoff.ts';
import { type Dialled, dialHub, HubRefusedError } from './dial.ts';
import { proveExits } from './prove-exits.ts';

export interface ReconnectOptions {
  /** First retry delay after a failure (jittered to [half, full]). */
  readonly initialMs: number;
  /** Ceiling of the growing delay. */
  readonly maxMs: number;
  /** A connection that lasted this long resets the delay to initialMs. */
  readonly stableAfterMs: number;
  /** Pace of retries after a 4xx refusal (jittered like the others). */
  readonly refusedRetryMs: number;
}

export interface ConnectOptions {
  /** `host:port` or `[v6]:port` of the hub. */
  readonly hub: string;
  readonly token: string;
  readonly hello: NodeHello;
  /** TLS to the hub: true for system CAs, or tls.connect options (ca, servername...). */
  readonly tls?: boolean | ConnectionOptions;
  readonly openEgress: OpenEgress;
  /** Streams idle for this long in both directions are cut (0: never). */
  readonly idleTimeoutMs: number;
  readonly logger?: TunnelLogger;
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  /** Connect + Upgrade answer deadline. */
  readonly dialTimeoutMs?: number;
  readonly reconnect?: Partial<ReconnectOptions>;
  /** How long open streams may finish after the hub said this agent was replaced (30 s). */
  readonly replacedDrainMs?: number;
  /** Replaces the TCP/TLS dial (tests, or reaching the hub through a relay). */
  readonly createConnection?: (target: { host: string; port: number }) => Duplex;
}

export type TunnelState = 'connecting' | 'connected' | 'waiting' | 'draining' | 'closed';

export interface TunnelClientEvents {
  connecting: [event: { attempt: number }];
  connected: [event: { nodeId: string | undefined }];
  /** The connection that took new streams is gone (closed, dead, or the hub sent GOAWAY). */
  disconnected: [event: { error: Error | undefined }];
  /** The hub answered the Upgrade with an error status. */
  rejected: [event: { status: number; message: string }];
  /**
   * Another agent with the same node token replaced this one (the hub's 409): the
   * client dials no more and drains (replacedDrainMs); 'closed' follows.
   */
  replaced: [event: { message: string }];
  retrying: [event: { attempt: number; delayMs: number; error: Error }];
  closed: [];
}

export interface TunnelClient extends EventEmitter<TunnelClientEvents> {
  readonly state: TunnelState;
  /** The node id the hub knows this agent as (from the last successful Upgrade). */
  readonly nodeId: string | undefined;
  /** Streams open on every connection, including one still draining after a GOAWAY. */
  readonly activeStreams: number;
  /**
   * Stops taking streams (GOAWAY), waits up to timeoutMs for open ones to finish, then
   * closes. No reconnection after this.
   */
  drain(timeoutMs: number): Promise<void>;
  /** Cuts every stream and connection now. */
  close(): Promise<void>;
}

const DEFAULT_RECONNECT: ReconnectOptions = {
  initialMs: 500,
  maxMs: 30_000,
  stableAfterMs: 60_000,
  refusedRetryMs: 60_000,
};
const DEFAULT_DIAL_TIMEOUT_MS = 15_000;
const DEFAULT_REPLACED_DRAIN_MS = 30_000;

/** Starts the agent's tunnel; throws at once when the options cannot work. */
export function connectToHub(options: ConnectOptions): TunnelClient {
  return new HubConnection(options);
}

class HubConnection extends EventEmitter<TunnelClientEvents> implements TunnelClient {
  readonly #options: ConnectOptions;
  readonly #log: TunnelLogger;
  readonly #hub: { host: string; port: number };
  readonly #hello: string;
  readonly #announced: NodeHello;
  readonly #reconnect: ReconnectOptions;
  /** Sent with every dial: lets the hub tell this agent reconnecting from another agent. */
  readonly #instance = randomBytes(18).toString('base64url');
  readonly #sessions = new Map<AgentSession, Promise<void>>();
  #state: TunnelState = 'connecting';
  #current: AgentSession | undefined;
  #connectedAt = 0;
  #failures = 0;
  #nodeId: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #dialling: AbortController | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: ConnectOptions) {
    super();
    const hub = parseAuthority(options.hub);
    if (!hub) throw new TypeError(`hub must be host:port, got "${options.hub}"`);
    this.#options = options;
    this.#hub = hub;
    const checked = validateHello(options.hello);
    if (!checked.ok) throw new TypeError(`invalid hello: ${checked.reason}`);
    // The hello as the hub will see it (canonical exit IPs, lowercase country).
    this.#announced = checked.hello;
    this.#hello = encodeHello(checked.hello);
    this.#reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#log = options.logger ?? silentLogger;
    // Let the caller attach listeners before the first event.
    process.nextTick(() => this.#dial());
  }

  get state(): TunnelState {
    return this.#state;
  }

  get nodeId(): string | undefined {
    return this.#nodeId;
  }

  get activeStreams(): number {
    let total = 0;
    for (const session of this.#sessions.keys()) total += session.activeStreams;
    return total;
  }

  drain(timeoutMs: number): Promise<void> {
    this.#stopping ??= this.#shutDown(timeoutMs);
    return this.#stopping;
  }

  close(): Promise<void> {
    const stopping = this.drain(0);
    for (const session of this.#sessions.keys()) session.destroy();
    return stopping;
  }

  #dial(): void {
    if (this.#stopping) return;
    this.#state = 'connecting';
    this.emit('connecting', { attempt: this.#failures + 1 });
    const dialling = new AbortController();
    this.#dialling = dialling;
    const tls = this.#options.tls;
    dialHub({
      ...this.#hub,
      token: this.#options.token,
      hello: this.#hello,
      agentVersion: this.#options.hello.agentVersion,
      instance: this.#instance,
      tls: tls === true ? {} : tls || false,
      timeoutMs: this.#options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      signal: dialling.signal,
      ...(this.#options.createConnection
        ? { createConnection: this.#options.createConnection }
        : {}),
    }).then(
      (dialled) => this.#onDialled(dialled),
      (error: Error) => this.#onDialFailed(error),
    );
  }

  #onDialled({ socket, nodeId, proofNonce }: Dialled): void {
    this.#dialling = undefined;
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    let session: AgentSession;
    try {
      session = new AgentSession({
        socket,
        hello: this.#announced,
        openEgress: this.#options.openEgress,
        idleTimeoutMs: this.#options.idleTimeoutMs,
        pingIntervalMs: this.#options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pingTimeoutMs: this.#options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
        logger: this.#log,
      });
    } catch (error) {
      socket.destroy();
      this.#onDialFailed(error as Error);
      return;
    }
    const closed = new Promise<void>((resolve) => {
      session.once('close', (error) => {
        this.#sessions.delete(session);
        this.#lost(session, error);
        resolve();
      });
    });
    this.#sessions.set(session, closed);
    // The hub is going away (restart, or this node connected again elsewhere): connect
    // anew now and let this connection's streams finish on their own.
    session.once('goaway', (reason) =>
      this.#lost(session, reason ? new Error(`the hub closed the tunnel: ${reason}`) : undefined),
    );
    this.#current = session;
    this.#connectedAt = performance.now();
    this.#nodeId = nodeId;
    this.#state = 'connected';
    this.#log.info({ hub: this.#options.hub, nodeId }, 'connected to the hub');
    this.emit('connected', { nodeId });
    if (proofNonce !== undefined) {
      const proving = new AbortController();
      session.once('close', () => proving.abort());
      const tls = this.#options.tls;
      void proveExits({
        ...this.#hub,
        tls: tls === true ? {} : tls || false,
        nonce: proofNonce,
        exitIps: this.#announced.exitIps,
        timeoutMs: this.#options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
        signal: proving.signal,
        logger: this.#log,
      });
    }
  }

  #lost(session: AgentSession, error: Error | undefined): void {
    if (this.#current !== session) return;
    this.#current = undefined;
    this.emit('disconnected', { error });
    if (this.#stopping) return;
    if (performance.now() - this.#connectedAt >= this.#reconnect.stableAfterMs) this.#failures = 0;
    this.#retry(error ?? new Error('the hub closed the tunnel'));
  }

  #onDialFailed(error: Error): void {
    this.#dialling = undefined;
    if (this.#stopping) return;
    if (error instanceof HubRefusedError && error.status === REPLACED_STATUS) {
      this.emit('replaced', { message: error.reason });
      void this.drain(this.#options.replacedDrainMs ?? DEFAULT_REPLACED_DRAIN_MS);
      return;
    }
    if (error instanceof HubRefusedError) {
      this.emit('rejected', { status: error.status, message: error.message });
      if (error.status < 500) {
        const pace = this.#reconnect.refusedRetryMs;
        this.#retry(error, backoffDelay(1, { initialMs: pace, maxMs: pace }));
        return;
      }
    }
    this.#retry(error);
  }

  #retry(error: Error, delayMs?: number): void {
    this.#failures += 1;
    const delay = delayMs ?? backoffDelay(this.#failures, this.#reconnect);
    this.#state = 'waiting';
    this.#log.warn(
      { hub: this.#options.hub, attempt: this.#failures, delayMs: delay, err: error },
      'hub connection failed; retrying',
    );
    this.emit('retrying', { attempt: this.#failures, delayMs: delay, error });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#dial();
    }, delay);
  }

  async #shutDown(graceMs: number): Promise<void> {
    this.#state = 'draining';
    clearTimeout(this.#retryTimer);
    this.#dialling?.abort();
    for (const session of this.#sessions.keys()) session.close();
    const allClosed = () => Promise.all(this.#sessions.values());
    if (graceMs > 0 && this.#sessions.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([allClosed(), expired]);
      clearTimeout(timer);
    }
    for (const session of this.#sessions.keys()) session.destroy();
    await allClosed();
    this.#state = 'closed';
    this.emit('closed');
  }
}
