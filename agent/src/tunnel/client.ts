/**
 * connectToHub: keeps an exit node attached to one of its hubs. Dials out, serves the
 * hub's streams, and when the connection is lost or refused, dials again; until drain()
 * or close().
 *
 * Several hubs: the hub addresses (each one given, and every A/AAAA record of a name,
 * resolved anew each round) are dialled in rounds. Within a round a failed address gives
 * way to the next one at once; when the whole round failed, the next round waits a
 * jittered delay that doubles per failed round. A connection that is lost (the hub died,
 * or sent GOAWAY because it is draining) starts a round at once with the next address, so
 * that the node is back on another hub within a dial's time; when the connection that
 * move led to is lost too before stableAfterMs, the loss waits the growing delay (a hub
 * that accepts and drops nodes cannot make them spin).
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
 *
 * Workers: a hub that says it is one of N workers of its host (WORKER_HEADER) is dialled
 * again at the same address until the agent holds a tunnel on every worker (hub-workers.ts),
 * each a full one with its own exit proofs. A dial that reaches a worker already held is
 * refused by it at once (HELD_WORKER_STATUS) and dialled again, a bounded number of times
 * per round, then after the growing delay. Losing one of these tunnels dials for that one
 * worker again; only losing the last moves the agent to the next hub address, and the
 * tunnels belong to the address the agent is on.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import {
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PING_TIMEOUT_MS,
  encodeHello,
  formatWorker,
  HELD_WORKER_STATUS,
  type HostPort,
  type NodeHello,
  parseAuthority,
  REPLACED_STATUS,
  silentLogger,
  type TunnelLogger,
  type TunnelProtocol,
  validateHello,
} from '@ipcola/shared/protocol';
import { AgentSession, type OpenEgress } from './agent-session.ts';
import { backoffDelay } from './backoff.ts';
import { type Dialled, type DialOptions, dialHub, HubRefusedError } from './dial.ts';
import {
  type HubAddress,
  hubLabel,
  type LookupAll,
  resolveHubs,
  sameHub,
} from './hub-addresses.ts';
import { HubWorkers } from './hub-workers.ts';
import { proveExits } from './prove-exits.ts';

export interface ReconnectOptions {
  /** First delay after a failed round (jittered to [half, full]). */
  readonly initialMs: number;
  /** Ceiling of the growing delay. */
  readonly maxMs: number;
  /**
   * A connection that lasted this long resets the delay; losing it dials the next hub at
   * once.
   */
  readonly stableAfterMs: number;
  /** Pace of retries after a 4xx refusal (jittered like the others). */
  readonly refusedRetryMs: number;
}

export interface ConnectOptions {
  /**
   * `host:port` or `[v6]:port` of the hub, or of each hub in the order to try them; a name
   * stands for every address it resolves to.
   */
  readonly hub: string | readonly string[];
  /** Resolves a hub name to all its addresses (dns.promises.lookup with all: true). */
  readonly lookup?: LookupAll;
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
  /**
   * The tunnel protocols to offer the hub, newest first (default: both, so v2 with a hub
   * that speaks it). ['h2'] makes the agent behave as a v1 agent does.
   */
  readonly protocols?: readonly TunnelProtocol[];
  /** Replaces the TCP/TLS dial (tests, or reaching the hub through a relay). */
  readonly createConnection?: (target: { host: string; port: number }) => Duplex;
}

export type TunnelState = 'connecting' | 'connected' | 'waiting' | 'draining' | 'closed';

export interface TunnelClientEvents {
  connecting: [event: { attempt: number; hub: string }];
  connected: [event: { nodeId: string | undefined; hub: string }];
  /** The connection that took new streams is gone (closed, dead, or the hub sent GOAWAY). */
  disconnected: [event: { error: Error | undefined }];
  /** The hub answered the Upgrade with an error status. */
  rejected: [event: { status: number; message: string; hub: string }];
  /**
   * Another agent with the same node token replaced this one (the hub's 409): the
   * client dials no more and drains (replacedDrainMs); 'closed' follows.
   */
  replaced: [event: { message: string }];
  /** A round of dialling starts after delayMs (0: at once, after a lost connection). */
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
   * Connections that take new streams: one per worker of the hub's host once attached to
   * all (1 with a hub without workers), 0 while none.
   */
  readonly tunnels: number;
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
  readonly #hubs: readonly HostPort[];
  readonly #hello: string;
  readonly #announced: NodeHello;
  readonly #reconnect: ReconnectOptions;
  /** Sent with every dial: lets the hub tell this agent reconnecting from another agent. */
  readonly #instance = randomBytes(18).toString('base64url');
  readonly #sessions = new Map<AgentSession, Promise<void>>();
  /** The connections that take new streams, one per worker of the hub address it is on. */
  readonly #workers = new HubWorkers<AgentSession>();
  #state: TunnelState = 'connecting';
  #connectedAt = 0;
  /** The dial for a missing worker in flight, and the wait before the next round of them. */
  #filling: AbortController | undefined;
  #fillTimer: NodeJS.Timeout | undefined;
  #fillFailures = 0;
  #failures = 0;
  /** This round's addresses, the next one to dial, and the last one dialled. */
  #round: HubAddress[] = [];
  #next = 0;
  #last: HubAddress | undefined;
  /** What went wrong in this round: a 4xx refusal sets the slow pace. */
  #roundError: Error | undefined;
  #roundRefused: HubRefusedError | undefined;
  /** A lost connection moved on without waiting, and nothing since proved stable. */
  #movedAtOnce = false;
  #nodeId: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #dialling: AbortController | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: ConnectOptions) {
    super();
    const given = typeof options.hub === 'string' ? [options.hub] : options.hub;
    if (given.length === 0) throw new TypeError('hub must name at least one host:port');
    this.#hubs = given.map((text) => {
      const hub = parseAuthority(text);
      if (!hub) throw new TypeError(`hub must be host:port, got "${text}"`);
      return hub;
    });
    this.#options = options;
    const checked = validateHello(options.hello);
    if (!checked.ok) throw new TypeError(`invalid hello: ${checked.reason}`);
    // The hello as the hub will see it (canonical exit IPs, lowercase country).
    this.#announced = checked.hello;
    this.#hello = encodeHello(checked.hello);
    this.#reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#log = options.logger ?? silentLogger;
    // Let the caller attach listeners before the first event.
    process.nextTick(() => this.#startRound());
  }

  get state(): TunnelState {
    return this.#state;
  }

  get nodeId(): string | undefined {
    return this.#nodeId;
  }

  get tunnels(): number {
    return this.#workers.size;
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

  /** Resolves the hubs and dials their addresses, starting after the one dialled last. */
  #startRound(): void {
    if (this.#stopping) return;
    this.#state = 'connecting';
    void resolveHubs(this.#hubs, this.#options.lookup).then(({ addresses, failures }) => {
      if (this.#stopping) return;
      for (const { hub, error } of failures) {
        this.#log.warn({ hub, err: error }, 'the hub name did not resolve');
      }
      const last = this.#last;
      const after = last ? addresses.findIndex((address) => sameHub(address, last)) + 1 : 0;
      this.#round = [...addresses.slice(after), ...addresses.slice(0, after)];
      this.#next = 0;
      this.#roundError = failures[0]?.error;
      this.#roundRefused = undefined;
      this.#dialNext();
    });
  }

  #dialNext(): void {
    if (this.#stopping) return;
    const address = this.#round[this.#next];
    this.#next += 1;
    if (!address) {
      this.#roundFailed();
      return;
    }
    this.#last = address;
    this.#state = 'connecting';
    const hub = hubLabel(address);
    this.emit('connecting', { attempt: this.#failures + 1, hub });
    const dialling = new AbortController();
    this.#dialling = dialling;
    dialHub(this.#dialOptions(address, dialling.signal)).then(
      (dialled) => this.#onDialled(dialled, address),
      (error: Error) => this.#onDialFailed(error, address),
    );
  }

  #dialOptions(address: HubAddress, signal: AbortSignal): DialOptions {
    return {
      host: address.host,
      port: address.port,
      ...(address.address === address.host ? {} : { address }),
      token: this.#options.token,
      hello: this.#hello,
      agentVersion: this.#options.hello.agentVersion,
      ...(this.#options.protocols ? { protocols: this.#options.protocols } : {}),
      instance: this.#instance,
      tls: this.#tls(),
      timeoutMs: this.#options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      signal,
      ...(this.#options.createConnection
        ? { createConnection: this.#options.createConnection }
        : {}),
    };
  }

  #tls(): false | ConnectionOptions {
    const tls = this.#options.tls;
    return tls === true ? {} : tls || false;
  }

  #onDialled(dialled: Dialled, address: HubAddress): void {
    this.#dialling = undefined;
    if (this.#stopping) {
      dialled.socket.destroy();
      return;
    }
    const session = this.#serve(dialled, address);
    if (session instanceof Error) {
      this.#onDialFailed(session, address);
      return;
    }
    this.#stopFilling();
    this.#workers.attach(address, session, dialled.worker);
    const { nodeId, worker } = dialled;
    this.#connectedAt = performance.now();
    this.#nodeId = nodeId;
    this.#state = 'connected';
    const hub = hubLabel(address);
    this.#log.info(
      { hub, nodeId, ...(worker ? { worker: formatWorker(worker) } : {}) },
      'connected to the hub',
    );
    this.emit('connected', { nodeId, hub });
    this.#fillWorkers();
  }

  /**
   * Runs the tunnel over a connection the hub upgraded, and proves the exits on it; the
   * error when no session could start (the dial failed, after all).
   */
  #serve({ socket, protocol, proofNonce }: Dialled, address: HubAddress): AgentSession | Error {
    let session: AgentSession;
    try {
      session = new AgentSession({
        socket,
        protocol,
        hello: this.#announced,
        openEgress: this.#options.openEgress,
        idleTimeoutMs: this.#options.idleTimeoutMs,
        pingIntervalMs: this.#options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pingTimeoutMs: this.#options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
        logger: this.#log,
      });
    } catch (error) {
      socket.destroy();
      return error as Error;
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
    if (proofNonce !== undefined) {
      const proving = new AbortController();
      session.once('close', () => proving.abort());
      void proveExits({
        host: address.host,
        port: address.port,
        ...(address.address === address.host ? {} : { address }),
        tls: this.#tls(),
        nonce: proofNonce,
        exitIps: this.#announced.exitIps,
        timeoutMs: this.#options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
        signal: proving.signal,
        logger: this.#log,
      });
    }
    return session;
  }

  /**
   * Dials the hub address the agent is on again while a worker of its host holds no
   * tunnel of this agent. One dial at a time; a round's dials are bounded, then the next
   * round waits the growing delay.
   */
  #fillWorkers(): void {
    const address = this.#workers.address;
    if (this.#stopping || this.#filling || this.#fillTimer || !address) return;
    if (this.#workers.missing() === 0) return;
    if (!this.#workers.takeDial()) {
      this.#fillFailures += 1;
      const delayMs = backoffDelay(this.#fillFailures, this.#reconnect);
      this.#log.debug(
        { hub: hubLabel(address), missing: this.#workers.missing(), delayMs },
        'some workers of the hub hold no tunnel yet; dialling again later',
      );
      this.#fillTimer = setTimeout(() => {
        this.#fillTimer = undefined;
        this.#workers.newRound();
        this.#fillWorkers();
      }, delayMs);
      return;
    }
    const dialling = new AbortController();
    this.#filling = dialling;
    dialHub({
      ...this.#dialOptions(address, dialling.signal),
      heldWorkers: this.#workers.heldWorkers(),
    }).then(
      (dialled) => this.#onWorkerDialled(dialled, address, dialling),
      (error: Error) => this.#onWorkerDialFailed(error, address, dialling),
    );
  }

  #onWorkerDialled(dialled: Dialled, address: HubAddress, dialling: AbortController): void {
    if (this.#filling !== dialling) {
      dialled.socket.destroy(); // given up meanwhile: the agent moved or is stopping
      return;
    }
    this.#filling = undefined;
    const { worker } = dialled;
    if (worker === undefined || this.#workers.holds(worker.id)) {
      // Only a hub that ignores the held list gets here (none does; an older hub says no
      // worker). It took this for a reconnection and is closing the tunnel it had: that
      // one's loss dials again.
      dialled.socket.destroy();
      this.#fillWorkers();
      return;
    }
    const session = this.#serve(dialled, address);
    if (session instanceof Error) {
      this.#onWorkerDialFailed(session, address, undefined);
      return;
    }
    this.#workers.add(session, worker);
    this.#fillFailures = 0;
    this.#log.info(
      { hub: hubLabel(address), worker: formatWorker(worker), tunnels: this.#workers.size },
      'attached to another worker of the hub',
    );
    this.#fillWorkers();
  }

  /** `dialling`: the dial that failed, or undefined when its tunnel failed to start. */
  #onWorkerDialFailed(
    error: Error,
    address: HubAddress,
    dialling: AbortController | undefined,
  ): void {
    if (dialling !== undefined) {
      if (this.#filling !== dialling) return;
      this.#filling = undefined;
    }
    if (this.#stopping) return;
    if (error instanceof HubRefusedError && error.status === REPLACED_STATUS) {
      this.#replaced(error);
      return;
    }
    if (!(error instanceof HubRefusedError && error.status === HELD_WORKER_STATUS)) {
      // The tunnels held keep serving; this round is over, the next waits.
      this.#log.warn(
        { hub: hubLabel(address), err: error },
        'could not attach to another worker of the hub; retrying',
      );
      this.#workers.endRound();
    }
    this.#fillWorkers();
  }

  #stopFilling(): void {
    this.#filling?.abort();
    this.#filling = undefined;
    clearTimeout(this.#fillTimer);
    this.#fillTimer = undefined;
    this.#fillFailures = 0;
  }

  #lost(session: AgentSession, error: Error | undefined): void {
    const address = this.#workers.address;
    const held = this.#workers.remove(session);
    if (!held || !address) return;
    if (this.#workers.size > 0) {
      // Other workers of this hub still serve: only this one is dialled again.
      if (this.#stopping) return;
      this.#log.warn(
        { hub: hubLabel(address), worker: held.worker, err: error },
        'lost the tunnel to one worker of the hub; dialling it again',
      );
      this.#fillWorkers();
      return;
    }
    this.#stopFilling();
    this.emit('disconnected', { error });
    if (this.#stopping) return;
    if (performance.now() - this.#connectedAt >= this.#reconnect.stableAfterMs) {
      this.#failures = 0;
      this.#movedAtOnce = false;
    }
    const why = error ?? new Error('the hub closed the tunnel');
    if (this.#movedAtOnce) {
      // The hub it moved to at once was lost before it proved stable: no spinning.
      this.#retry(why);
      return;
    }
    // The next hub address at once (the lost one last); a failed round still backs off.
    this.#movedAtOnce = true;
    this.#log.warn(
      { hub: this.#last && hubLabel(this.#last), err: why },
      'lost the hub; dialling the next hub address',
    );
    this.emit('retrying', { attempt: this.#failures + 1, delayMs: 0, error: why });
    this.#startRound();
  }

  #onDialFailed(error: Error, address: HubAddress): void {
    this.#dialling = undefined;
    if (this.#stopping) return;
    const hub = hubLabel(address);
    if (error instanceof HubRefusedError && error.status === REPLACED_STATUS) {
      this.#replaced(error);
      return;
    }
    if (error instanceof HubRefusedError) {
      this.emit('rejected', { status: error.status, message: error.message, hub });
      if (error.status < 500) this.#roundRefused = error;
    }
    this.#roundError = error;
    const problem = certificateProblem(error);
    if (problem) this.#log.error({ hub, err: error }, `${problem} (retrying)`);
    else if (!this.#options.tls && (error as NodeJS.ErrnoException).code === 'ECONNRESET') {
      // What a TLS hub does to a plain request (measured: ERR_SSL_HTTP_REQUEST on its side).
      this.#log.warn(
        { hub, err: error },
        'the hub cut the connection without answering: if it serves TLS, dial it with --tls or --ca',
      );
    } else if (this.#next < this.#round.length) {
      this.#log.warn({ hub, err: error }, 'could not attach to this hub address; trying the next');
    }
    this.#dialNext();
  }

  #replaced(error: HubRefusedError): void {
    this.emit('replaced', { message: error.reason });
    void this.drain(this.#options.replacedDrainMs ?? DEFAULT_REPLACED_DRAIN_MS);
  }

  /** Every address of the round failed: the next round waits. */
  #roundFailed(): void {
    const refused = this.#roundRefused;
    if (refused) {
      const pace = this.#reconnect.refusedRetryMs;
      this.#retry(refused, backoffDelay(1, { initialMs: pace, maxMs: pace }));
      return;
    }
    this.#retry(this.#roundError ?? new Error('no hub address to dial'));
  }

  #retry(error: Error, delayMs?: number): void {
    this.#failures += 1;
    const delay = delayMs ?? backoffDelay(this.#failures, this.#reconnect);
    this.#state = 'waiting';
    this.#log.warn(
      { hubs: this.#options.hub, attempt: this.#failures, delayMs: delay, err: error },
      'hub connection failed; retrying',
    );
    this.emit('retrying', { attempt: this.#failures, delayMs: delay, error });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#startRound();
    }, delay);
  }

  async #shutDown(graceMs: number): Promise<void> {
    this.#state = 'draining';
    clearTimeout(this.#retryTimer);
    this.#dialling?.abort();
    this.#stopFilling();
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

/** Certificate checks that fail the same way on every retry until the operator acts. */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/** What the operator should do about a TLS failure, or undefined when it is not one. */
export function certificateProblem(error: Error): string | undefined {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return "the hub's TLS certificate is not for the name dialled: give --hub a name the certificate carries";
  }
  if (UNTRUSTED.has(code)) {
    return "the hub's TLS certificate is not trusted: give the CA that issued it with --ca FILE";
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return "the hub's TLS certificate is out of its validity period: renew it on the server";
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    return 'the hub does not answer in TLS on this port: drop --tls and --ca, or check the port';
  }
  return undefined;
}
