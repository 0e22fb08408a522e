/**
 * The cluster role: several instances (processes or hosts) sharing PostgreSQL and Redis
 * act as one network. Any instance reaches any exit: which instance's hub holds which
 * node is in hot state (exit-directory.ts), and a stream for a node held elsewhere goes
 * over the internal hop to its holder (peer-hop.ts). With in-process hot state there is
 * one instance and nothing to join.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { GATEWAY_OPEN_TIMEOUT_MS } from '@ipcola/shared/protocol';
import { tunnelError } from '@ipcola/shared/tunnel-errors';
import { ConfigError } from '../config/index.ts';
import type { Logger } from '../log/index.ts';
import type { HotState } from '../store/index.ts';
import {
  createExitDirectory,
  type DirectoryIndex,
  type DirectoryTiming,
  type ExitState,
  type RemoteNode,
} from './exit-directory.ts';
import {
  createPeerClient,
  createPeerServer,
  isMovingRefusal,
  type PeerTarget,
  PeerUnreachableError,
  type ProofAnswer,
  type ProofClaim,
} from './peer-hop.ts';

export type { ExitState, RemoteNode };

/**
 * A hop with no byte either way for this long ends: longer than the gateway's own idle
 * timeout (120 s), which is the one customers meet.
 */
const HOP_IDLE_MS = 240_000;
/** An agent waits this long for its proof's answer at most (the hub's own wait is 5 s). */
const PROOF_ANSWER_MS = 3_000;

export interface ClusterOptions {
  readonly hotState: Pick<HotState, 'engine' | 'registry' | 'broadcast'>;
  /** The secret instances present to each other (derived from the shared pepper). */
  readonly secret: Buffer;
  /** The gateway's exit index, which the cluster fills with remote nodes' exits. */
  readonly index: DirectoryIndex;
  readonly hub: {
    /** Whether an agent of this node is on this instance's hub now. */
    holds(nodeId: string): boolean;
    exitStates(nodeId: string): ExitState[];
    openStream(target: PeerTarget, signal: AbortSignal): Promise<Duplex>;
    disconnect(nodeId: string): void;
    judgeProof(claim: ProofClaim): ProofAnswer | null;
  };
  /**
   * Where the hop listens (worker n of a host takes PEER_PORT + n - 1), and the address
   * other instances dial.
   */
  readonly listen: {
    host: string;
    port: number;
    worker: number;
    advertisedHost?: string | undefined;
  };
  /** How long shutdown lets hops still open finish. */
  readonly graceMs: number;
  /** A stream crossed the hop: relayed out to a holder, or served in for another instance. */
  readonly onHop?: (side: 'out' | 'in') => void;
  readonly logger: Logger;
  readonly timing?: Partial<DirectoryTiming>;
}

export interface Cluster {
  /** What the node followers fill: the gateway's index, published to other instances. */
  readonly index: DirectoryIndex;
  /** A node held by another instance; undefined when none holds it (or this one does). */
  remote(nodeId: string): RemoteNode | undefined;
  /** Opens a stream through a node another instance holds. */
  openStream(
    exit: { nodeId: string; ip: string },
    target: { host: string; port: number },
    signal: AbortSignal,
  ): Promise<Duplex>;
  /** Tells every instance a node was deleted. */
  deleted(nodeId: string): Promise<void>;
  /** Asks the other instances to judge an exit proof this one holds no connection for. */
  proveElsewhere(claim: ProofClaim): Promise<ProofAnswer | null>;
  /** Shutdown began: this instance's nodes are announced as moving, not gone. */
  draining(): void;
  /** Leaves the cluster: other instances stop sending streams here. */
  close(): Promise<void>;
}

/** Joins the other instances sharing the hot state; alone with in-process hot state. */
export async function joinCluster(options: ClusterOptions): Promise<Cluster> {
  if (options.hotState.engine === 'memory') return alone(options.index);
  const { hub, logger } = options;
  const server = createPeerServer({
    secret: options.secret,
    idleTimeoutMs: HOP_IDLE_MS,
    openLocal: (target, signal) => {
      options.onHop?.('in');
      return hub.openStream(target, signal);
    },
    judgeProof: (claim) => hub.judgeProof(claim),
    draining: () => directory.leaving(),
  });
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  const { host, worker, advertisedHost } = options.listen;
  const port = options.listen.port === 0 ? 0 : options.listen.port + worker - 1;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new ConfigError('PEER_PORT', `cannot listen on ${host}:${port} (${error.code})`)),
    );
    // Exclusive: workers sharing the public ports each need a hop port of their own.
    server.listen({ host, port, exclusive: true }, () => {
      server.removeAllListeners('error');
      server.on('error', (error) =>
        logger.error({ err: error }, 'the instance hop listener failed'),
      );
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const peerAddress = `${advertised(advertisedHost ?? host)}:${bound}`;
  const id = randomUUID();
  const directory = createExitDirectory({
    registry: options.hotState.registry,
    broadcast: options.hotState.broadcast,
    instanceId: id,
    // Derived from the shared pepper: one per database, so one per deployment.
    clusterName: createHash('sha256').update(options.secret).digest('hex').slice(0, 16),
    peerAddress,
    index: options.index,
    isLocalAgent: hub.holds,
    exitStates: hub.exitStates,
    disconnectLocal: hub.disconnect,
    logger: logger.child({ role: 'cluster' }),
    ...(options.timing ? { timing: options.timing } : {}),
  });
  const client = createPeerClient({
    secret: options.secret,
    answerTimeoutMs: GATEWAY_OPEN_TIMEOUT_MS,
  });
  logger.info({ instance: id, peer: peerAddress }, 'joined the cluster');
  return {
    index: directory,
    remote: (nodeId) => directory.remote(nodeId),
    async openStream(exit, target, signal) {
      const peerTarget = { nodeId: exit.nodeId, exitIp: exit.ip, ...target };
      // A second try only when the holder said the node is moving (it is draining).
      for (let attempt = 0; ; attempt++) {
        const holder = await directory.holder(exit.nodeId, GATEWAY_OPEN_TIMEOUT_MS, signal);
        if (signal.aborted) throw signal.reason;
        // It moved here while we looked (a draining instance's agent landed on this hub).
        if (holder === 'here') return hub.openStream(peerTarget, signal);
        if (!holder) throw tunnelError('exit_failed', `no instance holds node ${exit.nodeId}`);
        try {
          options.onHop?.('out');
          return await client.open(holder.peerAddress, peerTarget, signal);
        } catch (error) {
          if (error instanceof PeerUnreachableError) directory.unreachable(holder.instanceId);
          if (attempt > 0 || !isMovingRefusal(error)) throw error;
          directory.moving(exit.nodeId, holder.instanceId);
        }
      }
    },
    draining: () => directory.draining(),
    deleted: (nodeId) => directory.deleted(nodeId),
    async proveElsewhere(claim) {
      // Proofs come once per agent connection: asking every instance is cheap enough.
      const asked = (await directory.peers()).map((address) =>
        client.prove(address, claim, PROOF_ANSWER_MS).catch(() => null),
      );
      for (const answer of await Promise.all(asked)) if (answer) return answer;
      return null;
    },
    async close() {
      await directory.close();
      client.close();
      // Hops still open end with their customers' tunnels, which those instances own.
      for (const session of sessions) session.close();
      const cut = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, options.graceMs);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      clearTimeout(cut);
    },
  };
}

function alone(index: DirectoryIndex): Cluster {
  return {
    index,
    remote: () => undefined,
    openStream: (exit) =>
      Promise.reject(tunnelError('exit_failed', `node ${exit.nodeId} is not connected`)),
    deleted: async () => {},
    proveElsewhere: async () => null,
    draining: () => {},
    close: async () => {},
  };
}

/** A wildcard listen address is no address to dial: the host's name is. */
function advertised(host: string): string {
  if (host === '0.0.0.0' || host === '::') return hostname();
  return host.includes(':') ? `[${host}]` : host;
}
