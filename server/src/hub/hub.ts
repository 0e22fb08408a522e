/**
 * The hub: where exit nodes dial in. It accepts their Upgrade requests, keeps the
 * registry of connected nodes (one live session per node id) and opens CONNECT
 * streams through them for the gateway.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  canonicalIp,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PING_TIMEOUT_MS,
  EXIT_IP_HEADER,
  EXIT_PROOF_HEADER,
  HELD_WORKER_STATUS,
  HUB_OPEN_TIMEOUT_MS,
  type HubWorker,
  REPLACED_STATUS,
  silentLogger,
  type TunnelLogger,
} from '@ipcola/shared/protocol';
import type { ExitType } from '@ipcola/shared/targeting';
import { tunnelError } from '@ipcola/shared/tunnel-errors';
import { claimedAddress, ExitProofs } from './exit-proofs.ts';
import {
  type ConnectedNode,
  type NodeDownReason,
  NodeSession,
  type NodeSessionOptions,
  type StreamTarget,
} from './node-session.ts';
import { DEFAULT_STREAM_HEALTH, type StreamHealthPolicy } from './stream-health.ts';
import {
  checkUpgradeRequest,
  type Refusal,
  refusal,
  writeRefusal,
  writeSwitchingProtocols,
} from './upgrade.ts';

export interface HubOptions {
  /** Maps a node token to its node id; null when the token is unknown or revoked. */
  /**
   * Maps a node token to its node id, and the exit type it was registered with when there
   * is one: a hello announcing another type is refused, since exits are priced by it.
   */
  readonly authenticate: (token: string) => Promise<{ nodeId: string; type?: ExitType } | null>;
  readonly logger?: TunnelLogger;
  readonly pingIntervalMs?: number;
  /** A node whose PING answer takes longer is declared dead. */
  readonly pingTimeoutMs?: number;
  /** How long a node may take to answer a CONNECT (HUB_OPEN_TIMEOUT_MS: why it is that long). */
  readonly openTimeoutMs?: number;
  /** When failed stream opens take a node out of the pool, and how it is probed back. */
  readonly streamHealth?: Partial<StreamHealthPolicy>;
  /**
   * How long a new connection waits for its exit IPs' proofs before it is announced with
   * those still unproven left out (they join when proven).
   */
  readonly exitProofWaitMs?: number;
  /**
   * A proof whose connection this hub does not hold: behind a load balancer it may have
   * reached another instance than the agent's tunnel. Asks the others; null when none
   * holds it either.
   */
  readonly proveElsewhere?: (proof: ProofClaim) => Promise<ProofAnswer | null>;
  /**
   * Which worker of its host this hub is (WORKERS): told to every agent in the 101, so
   * that it attaches to every worker, and an agent's dial that reached this one again is
   * refused before anything else (HELD_WORKER_STATUS). Undefined: nothing is said.
   */
  readonly worker?: HubWorker;
}

/** An exit proof as the hub that received it saw it. */
export interface ProofClaim {
  readonly nonce: string;
  readonly ip: string;
  /** The address the proof's connection came from. */
  readonly seenFrom: string;
}

export type ProofAnswer = [status: number, message: string];

export interface NodeDownEvent {
  readonly nodeId: string;
  readonly reason: NodeDownReason;
  readonly error?: Error;
}

export interface HubEvents {
  'node-up': [node: ConnectedNode];
  'node-down': [event: NodeDownEvent];
}

export interface Hub extends EventEmitter<HubEvents> {
  /** For `server.on('upgrade', hub.handleUpgrade)`; already bound. */
  readonly handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** For POSTs to EXIT_PROOF_PATH: an agent proving an exit IP by connecting from it; bound. */
  readonly handleExitProof: (req: IncomingMessage, res: ServerResponse) => void;
  /** Judges a proof another instance received; null when no connection here has its nonce. */
  judgeProof(proof: ProofClaim): ProofAnswer | null;
  /**
   * Opens a stream to host:port through the node, from exitIp. Rejects with a
   * TunnelError whose code says why (exit_failed when the node is not connected, went
   * away or reset the stream), or with the signal's reason when aborted.
   */
  openStream(nodeId: string, target: StreamTarget): Promise<Duplex>;
  /** The nodes that take new streams now (not those out of the pool for failed opens). */
  nodes(): ConnectedNode[];
  node(nodeId: string): ConnectedNode | undefined;
  /** Resolves once every one of the nodes takes streams; rejects after timeoutMs. */
  whenNodesUp(nodeIds: readonly string[], timeoutMs: number): Promise<void>;
  /** Cuts every connection of the node (it was deleted); false when none was open. */
  disconnect(nodeId: string): boolean;
  /**
   * Refuses new nodes, sends every node GOAWAY, waits up to graceMs for open streams,
   * then cuts what is left. Every node gets node-down ('hub_closing') at once.
   */
  close(graceMs?: number): Promise<void>;
}

/** Proofs of the exit IPs come within milliseconds of the tunnel; a lost one costs this. */
const DEFAULT_EXIT_PROOF_WAIT_MS = 5_000;
/** Agent instances remembered per node as replaced (refused if they dial again). */
const DISPLACED_KEPT = 8;
/** A node id goes into a response header and into logs. */
const NODE_ID = /^[\x21-\x7e]{1,128}$/;

export function createHub(options: HubOptions): Hub {
  return new TunnelHub(options);
}

class TunnelHub extends EventEmitter<HubEvents> implements Hub {
  readonly #options: HubOptions;
  readonly #log: TunnelLogger;
  /** The one session per node that takes new streams. */
  readonly #current = new Map<string, NodeSession>();
  /** Every session still open, including replaced and draining ones. */
  readonly #sessions = new Set<NodeSession>();
  /** Sockets whose Upgrade is waiting for authenticate(). */
  readonly #pending = new Set<Duplex>();
  /**
   * Per node, the agent instances another agent with the same token replaced, and who
   * replaced them: they are refused (409) if they dial again, so that two agents
   * sharing a token do not take turns for ever. The newer agent wins.
   */
  readonly #displaced = new Map<string, Displaced>();
  readonly #streamHealth: StreamHealthPolicy;
  /** Every open connection's proofs, by their nonce. */
  readonly #proofs = new Map<
    string,
    { nodeId: string; proofs: ExitProofs; session?: NodeSession }
  >();
  /**
   * The addresses claimed in #proofs, with how many connections of each node claim them:
   * asking "held by another node?" must not scan every connection. With a scan, a hub
   * taking 10,000 nodes spent most of its time there (the 10,000th node waited behind
   * 10,000 list() calls per address), measured on 2026-12-06.
   */
  readonly #claims = new Map<string, Map<string, number>>();
  /** Ready connections not announced yet, waiting for their exit IPs' proofs. */
  readonly #awaitingProofs = new Map<NodeSession, NodeJS.Timeout>();
  #closing = false;

  constructor(options: HubOptions) {
    super();
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#streamHealth = { ...DEFAULT_STREAM_HEALTH, ...options.streamHealth };
  }

  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    this.#accept(req, socket, head).catch((error: unknown) => {
      this.#log.error({ err: error }, 'node upgrade failed');
      socket.destroy();
    });
  };

  readonly handleExitProof = (req: IncomingMessage, res: ServerResponse): void => {
    const answer = (status: number, message: string) => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
      res.end(`${message}\n`);
    };
    if (req.method !== 'POST') {
      answer(405, 'exit proofs are POSTs');
      return;
    }
    const nonce = req.headers[EXIT_PROOF_HEADER];
    const announced = req.headers[EXIT_IP_HEADER];
    const ip = typeof announced === 'string' ? canonicalIp(announced) : null;
    const unknown: ProofAnswer = [404, 'no connection of this agent announced that'];
    if (typeof nonce !== 'string' || ip === null) {
      answer(...unknown);
      return;
    }
    const claim = { nonce, ip, seenFrom: req.socket.remoteAddress ?? '' };
    const here = this.judgeProof(claim);
    if (here || !this.#options.proveElsewhere) {
      answer(...(here ?? unknown));
      return;
    }
    this.#options.proveElsewhere(claim).then(
      (elsewhere) => answer(...(elsewhere ?? unknown)),
      (error: unknown) => {
        this.#log.warn({ err: error }, 'asking other instances about an exit proof failed');
        answer(503, 'the instance holding this connection did not answer');
      },
    );
  };

  judgeProof({ nonce, ip, seenFrom: seen }: ProofClaim): ProofAnswer | null {
    const entry = this.#proofs.get(nonce);
    if (!entry) return null;
    const before = entry.proofs.list().find((proof) => proof.ip === ip)?.state;
    this.#claim(entry, -1);
    const proof = entry.proofs.prove(ip, seen, (address) =>
      this.#heldElsewhere(entry.nodeId, address),
    );
    this.#claim(entry, 1);
    if (!proof) return [404, `${ip} was not announced by this connection`];
    if (proof.state !== before) {
      this.#log.info({ nodeId: entry.nodeId, ...proof }, 'exit proved');
      if (entry.session) this.#proofsChanged(entry.session);
    }
    if (proof.state === 'verified') return [200, `${ip} is verified`];
    if (proof.state === 'duplicate') return [409, `${ip} is another node's exit`];
    return [409, `${ip} was not proven: the hub saw the proof come from ${proof.seenFrom ?? seen}`];
  }

  openStream(nodeId: string, target: StreamTarget): Promise<Duplex> {
    const session = this.#current.get(nodeId);
    if (!session) {
      return Promise.reject(tunnelError('exit_failed', `node ${nodeId} is not connected`));
    }
    if (session.ejected) {
      return Promise.reject(tunnelError('exit_failed', `node ${nodeId} is out of the pool`));
    }
    return session.open(target);
  }

  nodes(): ConnectedNode[] {
    return [...this.#current.values()]
      .filter((session) => !session.ejected)
      .map((session) => session.info());
  }

  whenNodesUp(nodeIds: readonly string[], timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending = new Set(nodeIds.filter((id) => !this.node(id)));
      if (pending.size === 0) return resolve();
      const onUp = ({ nodeId }: { nodeId: string }) => {
        pending.delete(nodeId);
        if (pending.size > 0) return;
        clearTimeout(timer);
        this.off('node-up', onUp);
        resolve();
      };
      const timer = setTimeout(() => {
        this.off('node-up', onUp);
        reject(new Error(`${pending.size} exit node(s) did not connect in ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('node-up', onUp);
    });
  }

  node(nodeId: string): ConnectedNode | undefined {
    const session = this.#current.get(nodeId);
    return session && !session.ejected ? session.info() : undefined;
  }

  disconnect(nodeId: string): boolean {
    this.#displaced.delete(nodeId);
    let found = false;
    for (const session of this.#sessions) {
      if (session.nodeId !== nodeId) continue;
      found = true;
      this.#retire(session, 'removed');
      session.destroy('removed');
    }
    return found;
  }

  async close(graceMs = 0): Promise<void> {
    this.#closing = true;
    for (const socket of this.#pending) socket.destroy();
    for (const session of this.#current.values()) this.#retire(session, 'hub_closing');
    const sessions = [...this.#sessions];
    const closed = sessions.map(
      (session) => new Promise<void>((resolve) => session.once('close', () => resolve())),
    );
    for (const session of sessions) {
      if (graceMs > 0) session.close();
      else session.destroy('hub_closing');
    }
    if (graceMs > 0) {
      const cut = setTimeout(() => {
        for (const session of sessions) session.destroy('hub_closing');
      }, graceMs);
      await Promise.all(closed);
      clearTimeout(cut);
    } else {
      await Promise.all(closed);
    }
  }

  async #accept(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // The socket is ours from here; a reset while we think must not crash the process.
    socket.on('error', (error) => this.#log.debug({ err: error }, 'node socket error'));
    if (this.#closing) return this.#refuse(socket, refusal(503, 'the hub is shutting down'));
    const check = checkUpgradeRequest(req);
    if (!check.ok) return this.#refuse(socket, check.refusal);
    const worker = this.#options.worker;
    if (worker && check.heldWorkers.has(worker.id)) {
      // Its tunnel here is alive (a stale one would not be listed): keep it, and cost this
      // dial no token check. Debug: every agent meets this a few times per attach.
      return this.#refuse(
        socket,
        refusal(
          HELD_WORKER_STATUS,
          `this agent holds a tunnel on worker ${worker.id} already; dial again for another`,
        ),
        'debug',
      );
    }

    this.#pending.add(socket);
    let identity: { nodeId: string; type?: ExitType } | null;
    try {
      identity = await this.#options.authenticate(check.token);
    } catch (error) {
      this.#log.error({ err: error }, 'node authentication failed');
      return this.#refuse(socket, refusal(503, 'cannot check tokens right now; retry later'));
    } finally {
      this.#pending.delete(socket);
    }
    if (socket.destroyed) return;
    if (this.#closing) return this.#refuse(socket, refusal(503, 'the hub is shutting down'));
    if (!identity) return this.#refuse(socket, refusal(401, 'the node token was not accepted'));
    if (!NODE_ID.test(identity.nodeId)) {
      throw new TypeError('authenticate() returned a node id that is not visible ASCII');
    }

    const { nodeId } = identity;
    if (identity.type !== undefined && check.hello.type !== identity.type) {
      return this.#refuse(
        socket,
        refusal(
          400,
          `node ${nodeId} is registered as ${identity.type}, not ${check.hello.type}: start the agent with --type ${identity.type}`,
        ),
      );
    }
    const displaced = this.#displaced.get(nodeId);
    if (check.instance !== undefined && displaced?.instances.includes(check.instance)) {
      this.#log.warn(
        { nodeId, remoteAddress: (socket as Socket).remoteAddress, replacedBy: displaced.by },
        'an agent replaced by another with the same node token dialled again: refused',
      );
      return this.#refuse(
        socket,
        refusal(
          REPLACED_STATUS,
          `another agent with this node token connected from ${displaced.by} at ` +
            `${displaced.at.toISOString()} and replaced this one; one agent per node token`,
        ),
      );
    }
    const proofs = new ExitProofs(
      check.hello.exitIps,
      (socket as Socket).remoteAddress,
      (address) => this.#heldElsewhere(nodeId, address),
    );
    this.#addProofs({ nodeId, proofs });
    const { protocol } = check;
    writeSwitchingProtocols(
      socket,
      protocol,
      nodeId,
      proofs.nonce,
      this.#options.worker,
      (error) => {
        if (error || socket.destroyed || this.#closing) {
          this.#removeProofs(proofs.nonce);
          socket.destroy();
          return;
        }
        this.#startSession(
          { nodeId, hello: check.hello, instance: check.instance, protocol },
          socket,
          head,
          proofs,
        );
      },
    );
  }

  #refuse(socket: Duplex, answer: Refusal, level: 'info' | 'debug' = 'info'): void {
    this.#log[level]({ status: answer.status, reason: answer.message }, 'node upgrade refused');
    writeRefusal(socket, answer);
  }

  #startSession(
    arrival: Pick<NodeSessionOptions, 'nodeId' | 'hello' | 'instance' | 'protocol'>,
    socket: Duplex,
    head: Buffer,
    proofs: ExitProofs,
  ): void {
    const session = new NodeSession({
      ...arrival,
      proofs,
      socket,
      head,
      pingIntervalMs: this.#options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
      pingTimeoutMs: this.#options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
      openTimeoutMs: this.#options.openTimeoutMs ?? HUB_OPEN_TIMEOUT_MS,
      streamHealth: this.#streamHealth,
      logger: this.#log,
    });
    this.#sessions.add(session);
    const entry = this.#proofs.get(proofs.nonce);
    if (entry) entry.session = session;
    session.once('ready', () => this.#onReady(session));
    session.once('goaway', () => this.#retire(session, 'draining'));
    // Out of selection the moment it is given up, not when its session finally closes.
    session.once('down', (reason, error) => this.#retire(session, reason, error));
    session.on('ejected', () => {
      if (this.#current.get(session.nodeId) !== session) return;
      this.#log.info({ nodeId: session.nodeId, reason: 'stream_failures' }, 'node down');
      this.emit('node-down', { nodeId: session.nodeId, reason: 'stream_failures' });
    });
    session.on('restored', () => {
      if (this.#current.get(session.nodeId) !== session) return;
      this.#log.info({ nodeId: session.nodeId }, 'node up');
      this.emit('node-up', session.info());
    });
    session.once('close', (reason, error) => {
      this.#sessions.delete(session);
      this.#removeProofs(proofs.nonce);
      clearTimeout(this.#awaitingProofs.get(session));
      this.#awaitingProofs.delete(session);
      this.#retire(session, reason, error);
    });
  }

  #onReady(session: NodeSession): void {
    if (this.#closing) {
      session.destroy('hub_closing');
      return;
    }
    const previous = this.#current.get(session.nodeId);
    if (previous) this.#replace(previous, session);
    this.#current.set(session.nodeId, session);
    if (session.proofs.pending === 0) {
      this.#announce(session);
      return;
    }
    const wait = setTimeout(() => {
      this.#awaitingProofs.delete(session);
      this.#announce(session);
    }, this.#options.exitProofWaitMs ?? DEFAULT_EXIT_PROOF_WAIT_MS);
    wait.unref();
    this.#awaitingProofs.set(session, wait);
  }

  #announce(session: NodeSession): void {
    if (this.#current.get(session.nodeId) !== session || session.ejected) return;
    this.#log.info(
      {
        nodeId: session.nodeId,
        remoteAddress: session.remoteAddress,
        hello: session.hello,
        exits: session.proofs.list(),
      },
      'node up',
    );
    this.emit('node-up', session.info());
  }

  /** A proof was judged: the node is announced (again) with its proven exits. */
  #proofsChanged(session: NodeSession): void {
    const waiting = this.#awaitingProofs.get(session);
    if (waiting !== undefined) {
      if (session.proofs.pending > 0) return;
      clearTimeout(waiting);
      this.#awaitingProofs.delete(session);
    } else if (!session.ready) {
      return; // #onReady announces it
    }
    this.#announce(session);
  }

  /** Whether a node other than nodeId holds the address as its exit. */
  #heldElsewhere(nodeId: string, address: string): boolean {
    // Every open connection, ready or not: two agents proving one address at once must
    // not both win.
    const holders = this.#claims.get(address);
    if (!holders) return false;
    for (const holder of holders.keys()) if (holder !== nodeId) return true;
    return false;
  }

  #addProofs(entry: { nodeId: string; proofs: ExitProofs }): void {
    this.#proofs.set(entry.proofs.nonce, entry);
    this.#claim(entry, 1);
  }

  #removeProofs(nonce: string): void {
    const entry = this.#proofs.get(nonce);
    if (!entry) return;
    this.#proofs.delete(nonce);
    this.#claim(entry, -1);
  }

  /** Counts (1) or uncounts (-1) the addresses the connection claims now in #claims. */
  #claim(entry: { nodeId: string; proofs: ExitProofs }, sign: 1 | -1): void {
    for (const proof of entry.proofs.list()) {
      const address = claimedAddress(proof);
      if (address === undefined) continue;
      let holders = this.#claims.get(address);
      if (!holders) {
        holders = new Map();
        this.#claims.set(address, holders);
      }
      const count = (holders.get(entry.nodeId) ?? 0) + sign;
      if (count > 0) holders.set(entry.nodeId, count);
      else holders.delete(entry.nodeId);
      if (holders.size === 0) this.#claims.delete(address);
    }
  }

  /**
   * A newer connection of the node is ready. The same agent reconnecting simply takes
   * over (its old connection is stale); another agent with the same token replaces the
   * previous one, which is refused from now on: the newer wins, so that an operator who
   * starts an agent elsewhere moves the node, and two agents never take turns.
   */
  #replace(previous: NodeSession, session: NodeSession): void {
    const { nodeId } = session;
    const sameAgent = previous.instance !== undefined && previous.instance === session.instance;
    if (sameAgent) {
      this.#log.info(
        { nodeId, remoteAddress: session.remoteAddress, previousAddress: previous.remoteAddress },
        'node connected again; its previous connection is closed',
      );
    } else {
      if (previous.instance !== undefined) {
        const instances = this.#displaced.get(nodeId)?.instances ?? [];
        this.#displaced.set(nodeId, {
          instances: [...instances, previous.instance].slice(-DISPLACED_KEPT),
          by: session.remoteAddress ?? 'an unknown address',
          at: new Date(),
        });
      }
      this.#log.warn(
        { nodeId, remoteAddress: session.remoteAddress, previousAddress: previous.remoteAddress },
        'another agent presented this node token and replaced the connected one; the older agent is refused from now on',
      );
    }
    this.#retire(previous, 'replaced');
    // Its streams may still be alive and finish; if its connection is dead, PINGs will tell.
    previous.close(
      sameAgent
        ? 'replaced by a newer connection of this agent'
        : 'replaced by another agent with this node token',
    );
  }

  /** Takes `session` out of the registry if it is its node's current one. */
  #retire(session: NodeSession, reason: NodeDownReason, error?: Error): void {
    if (this.#current.get(session.nodeId) !== session) return;
    this.#current.delete(session.nodeId);
    this.#log.info({ nodeId: session.nodeId, reason, err: error }, 'node down');
    // An ejected node already left the pool; its listeners heard node-down then.
    if (session.ejected) return;
    this.emit('node-down', { nodeId: session.nodeId, reason, ...(error ? { error } : {}) });
  }
}

interface Displaced {
  instances: string[];
  /** The address of the agent that replaced them. */
  by: string;
  at: Date;
}

/** The settings that judge nodes' health (HUB_PING_*, HUB_STREAM_*, HUB_PROBE_*), as hub options. */
export function nodeHealthOptions(health: {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  streamFailureLimit: number;
  probeBackoffMs: number;
  probeBackoffMaxMs: number;
}): Pick<HubOptions, 'pingIntervalMs' | 'pingTimeoutMs' | 'streamHealth'> {
  return {
    pingIntervalMs: health.pingIntervalMs,
    pingTimeoutMs: health.pingTimeoutMs,
    streamHealth: {
      failureLimit: health.streamFailureLimit,
      backoffMs: health.probeBackoffMs,
      backoffMaxMs: health.probeBackoffMaxMs,
    },
  };
}
