/**
 * Which instance holds which node, shared through hot state so that every instance's
 * gateway can lease every exit. An instance announces itself (its peer address) with a
 * short time-to-live it keeps renewing; the nodes its hub holds are registered under the
 * node and the instance, and changes are broadcast. Other instances apply the broadcasts
 * at once, and resync from the registry periodically and after every reconnect, because
 * a broadcast missed while disconnected is gone for good.
 *
 * A node's entries are keyed by node and instance (`node@instance`), so that a node moving
 * between instances never has one instance's removal delete the other's registration;
 * the newest live registration wins. A node may also be held by several instances at once
 * (an agent attaches to every worker of the host it dials): every holder is remembered,
 * so that losing one leaves the node reachable through the others at once, and an
 * instance that holds the node itself never looks elsewhere. Entries of an instance whose announcement lapsed
 * (it crashed) are ignored at once and deleted by whoever notices.
 */
import type { Logger } from '../log/index.ts';
import type { Broadcast, LiveRegistry } from '../store/index.ts';

/** An exit as the holder placed it: what the gateway index takes. */
export type PlacedExit = Readonly<Record<string, unknown>> & { readonly ip: string };

/** One exit IP's proof state and place, as the holder's API would show it. */
export type ExitState = Readonly<Record<string, unknown>> & { readonly ip: string };

export interface DirectoryIndex {
  addNodeExits(nodeId: string, exits: readonly PlacedExit[]): void;
  removeNodeExits(nodeId: string): void;
}

export interface ExitDirectoryOptions {
  readonly registry: LiveRegistry;
  readonly broadcast: Broadcast;
  /** This instance's name: new on every start. */
  readonly instanceId: string;
  /**
   * The deployment's name: deployments (or test runs) sharing one Redis but not one
   * database never see each other's instances.
   */
  readonly clusterName: string;
  /** Where other instances open streams to this one (`host:port`). */
  readonly peerAddress: string;
  /** The gateway's exits: local nodes and remote ones alike end up here. */
  readonly index: DirectoryIndex;
  /** Whether the node is an agent on this instance's hub now (others are not published). */
  isLocalAgent(nodeId: string): boolean;
  /** The node's exits with their proof states, published for other instances' API. */
  exitStates(nodeId: string): ExitState[];
  /** A node deleted on another instance: cut its tunnel here if it is held here. */
  disconnectLocal(nodeId: string): void;
  readonly logger: Logger;
  readonly timing?: Partial<DirectoryTiming>;
}

export interface DirectoryTiming {
  /** How often this instance renews its announcement. */
  announceMs: number;
  /** An announcement not renewed for this long is a stopped instance. */
  instanceTtlMs: number;
  /** How often the whole registry is read again (broadcasts may have been missed). */
  resyncMs: number;
}

const DEFAULT_TIMING: DirectoryTiming = {
  announceMs: 2_000,
  instanceTtlMs: 6_000,
  resyncMs: 15_000,
};

/** Registrations are renewed this often (their holder's announcement is what says it lives). */
const NODE_ENTRY_TTL_MS = 24 * 3_600_000;
const NODE_ENTRY_RENEW_MS = 3_600_000;

/**
 * How long a draining instance's nodes stay leasable elsewhere while their agents move:
 * an agent told to go (GOAWAY) dials the next hub at once and is back within about a
 * second on a LAN; past this it is taken for gone.
 */
const MOVE_WAIT_MS = 10_000;

interface Registration {
  /** The holding instance. */
  readonly i: string;
  /** When it was registered (the newest wins while a node moves). */
  readonly at: number;
  readonly exits: PlacedExit[];
  readonly states: ExitState[];
}

type Message =
  | { t: 'up'; n: string; r: Registration }
  /** `m`: the holder is draining and its agents are moving to another instance. */
  | { t: 'down'; n: string; i: string; m?: true }
  | { t: 'delete'; n: string }
  | { t: 'bye'; i: string };

export interface RemoteNode {
  readonly instanceId: string;
  readonly peerAddress: string;
  readonly states: readonly ExitState[];
}

export interface ExitDirectory extends DirectoryIndex {
  /** The instance holding a node this instance does not, with its peer address. */
  remote(nodeId: string): RemoteNode | undefined;
  /**
   * Where a node is held: here, another instance, or (undefined) nowhere. A node whose
   * holder is draining is waited for, up to waitMs or the signal, while its agent moves.
   */
  holder(
    nodeId: string,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<'here' | RemoteNode | undefined>;
  /** From now on this instance's nodes are moving away (shutdown): others wait for them. */
  draining(): void;
  /** Whether draining() was called. */
  leaving(): boolean;
  /** The node's holder said it is moving (its refusal crossed its broadcast): wait for it. */
  moving(nodeId: string, fromInstance: string): void;
  /** The hop addresses of the other live instances, read afresh from the registry. */
  peers(): Promise<string[]>;
  /** A peer did not answer: its nodes leave this instance's index until it is seen again. */
  unreachable(instanceId: string): void;
  /** Tells every instance a node was deleted (its holder cuts it). */
  deleted(nodeId: string): Promise<void>;
  /** Reads the registry again now (tests, start-up). */
  resync(): Promise<void>;
  /** Withdraws this instance's announcement and registrations, and stops. */
  close(): Promise<void>;
}

export function createExitDirectory(options: ExitDirectoryOptions): ExitDirectory {
  const { registry, broadcast, instanceId, index, logger } = options;
  const timing = { ...DEFAULT_TIMING, ...options.timing };
  const INSTANCES = `instances:${options.clusterName}`;
  const NODES = `nodes:${options.clusterName}`;
  const TOPIC = `nodes:${options.clusterName}`;
  /** Nodes this instance's hub holds and published. */
  const local = new Map<string, Registration>();
  /** Nodes other instances hold, as last heard: node, then holding instance. */
  const remote = new Map<string, Map<string, Registration>>();
  /** Live instances and their peer addresses. */
  const instances = new Map<string, string>();
  /** Instances a hop failed to reach, and until when they are set aside. */
  const unreachable = new Map<string, number>();
  let closed = false;
  let leaving = false;
  /** Nodes whose holder is draining, until when their exits stay leasable while they move. */
  const moving = new Map<string, NodeJS.Timeout>();
  /** Opens waiting for a moving node to be held again. */
  const waiters = new Map<string, Set<() => void>>();
  const arrived = (nodeId: string) => {
    const timer = moving.get(nodeId);
    if (timer) clearTimeout(timer);
    moving.delete(nodeId);
    for (const wake of waiters.get(nodeId) ?? []) wake();
    waiters.delete(nodeId);
  };

  /** What failed since hot state last answered: said once each, not every round. */
  const failing = new Set<string>();
  const warn = (what: string) => (error: unknown) => {
    if (closed || failing.has(what)) return;
    failing.add(what);
    logger.warn({ err: error }, what);
  };
  const send = (message: Message) =>
    broadcast.publish(TOPIC, JSON.stringify(message)).catch(warn('broadcasting a node failed'));
  const entryId = (nodeId: string, holder: string) => `${nodeId}@${holder}`;

  const usable = (registration: Registration) =>
    registration.i !== instanceId &&
    instances.has(registration.i) &&
    (unreachable.get(registration.i) ?? 0) <= Date.now();
  const newest = (nodeId: string, only: (registration: Registration) => boolean) => {
    let best: Registration | undefined;
    for (const registration of remote.get(nodeId)?.values() ?? []) {
      if (only(registration) && (!best || best.at < registration.at)) best = registration;
    }
    return best;
  };
  /** The holder this instance's streams for the node go to: the newest usable one. */
  const chosen = (nodeId: string) => newest(nodeId, usable);

  /** Sets (or, undefined, drops) what one instance holds of a node. */
  const applyRemote = (nodeId: string, holder: string, next: Registration | undefined) => {
    const before = newest(nodeId, () => true);
    const holders = remote.get(nodeId) ?? new Map<string, Registration>();
    if (next) holders.set(holder, next);
    else holders.delete(holder);
    if (holders.size > 0) remote.set(nodeId, holders);
    else remote.delete(nodeId);
    reindex(nodeId, before);
  };
  /** Sets (or, undefined, drops) every holder of a node at once (a resync). */
  const applyHolders = (nodeId: string, next: Map<string, Registration> | undefined) => {
    const before = newest(nodeId, () => true);
    if (next) remote.set(nodeId, next);
    else remote.delete(nodeId);
    reindex(nodeId, before);
  };
  /**
   * Puts the node's exits in the index as the holder now chosen says, unless this
   * instance holds the node itself. `before` is the newest holder before the change,
   * usable or not: the instance that just became unusable is the one to take out.
   */
  const reindex = (nodeId: string, before: Registration | undefined) => {
    if (local.has(nodeId) || options.isLocalAgent(nodeId)) return;
    const after = chosen(nodeId);
    if (after) {
      const wasMoving = moving.has(nodeId);
      arrived(nodeId);
      if (!wasMoving && before && before.at === after.at && before.i === after.i) return;
      index.addNodeExits(nodeId, after.exits);
    } else if (before) {
      index.removeNodeExits(nodeId);
    }
  };

  const remoteOf = (nodeId: string): RemoteNode | undefined => {
    if (local.has(nodeId)) return undefined;
    const registration = chosen(nodeId);
    if (!registration) return undefined;
    const peerAddress = instances.get(registration.i);
    return peerAddress === undefined
      ? undefined
      : { instanceId: registration.i, peerAddress, states: registration.states };
  };

  const onMessage = (raw: string) => {
    let message: Message;
    try {
      message = JSON.parse(raw) as Message;
    } catch {
      return;
    }
    switch (message.t) {
      case 'up': {
        if (message.r.i === instanceId) return;
        const before = remote.get(message.n)?.get(message.r.i);
        if (before && before.at > message.r.at) return;
        // Heard before its announcement was read: it is alive, it just said so.
        if (!instances.has(message.r.i)) void readInstances().catch(warn('reading instances'));
        unreachable.delete(message.r.i);
        applyRemote(message.n, message.r.i, message.r);
        return;
      }
      case 'down':
        if (!remote.get(message.n)?.has(message.i)) return;
        if (message.m) leftMoving(message.n, message.i);
        else applyRemote(message.n, message.i, undefined);
        return;
      case 'delete':
        options.disconnectLocal(message.n);
        return;
      case 'bye':
        forgetInstance(message.i);
        return;
    }
  };

  /**
   * One holder of the node is draining. Another holder takes its streams at once; with
   * none, its agent is moving: its exits stay leasable, and opens wait for it to land.
   */
  const leftMoving = (nodeId: string, fromInstance: string) => {
    const others = [...(remote.get(nodeId)?.values() ?? [])].some(
      (registration) => registration.i !== fromInstance && usable(registration),
    );
    if (others || local.has(nodeId)) {
      applyRemote(nodeId, fromInstance, undefined);
      return;
    }
    remote.delete(nodeId);
    if (moving.has(nodeId)) return;
    const timer = setTimeout(() => {
      moving.delete(nodeId);
      if (!chosen(nodeId) && !local.has(nodeId)) index.removeNodeExits(nodeId);
      arrived(nodeId);
    }, MOVE_WAIT_MS);
    timer.unref();
    moving.set(nodeId, timer);
  };

  const forgetInstance = (id: string) => {
    instances.delete(id);
    for (const [nodeId, holders] of [...remote]) {
      if (holders.has(id)) applyRemote(nodeId, id, undefined);
    }
  };

  const readInstances = async () => {
    const listed = await registry.list(INSTANCES);
    const alive = new Map<string, string>();
    for (const { id, value } of listed) {
      const peer = (JSON.parse(value) as { peer?: unknown }).peer;
      if (typeof peer === 'string') alive.set(id, peer);
    }
    for (const id of [...instances.keys()]) if (!alive.has(id)) forgetInstance(id);
    // A node heard of before its holder's announcement was read waits in `remote`
    // unindexed (its holder was not usable yet): it is indexed as its holder becomes known.
    const waiting = new Map<string, Registration | undefined>();
    for (const [nodeId, holders] of remote) {
      if ([...holders.keys()].some((id) => alive.has(id) && !instances.has(id))) {
        waiting.set(nodeId, chosen(nodeId));
      }
    }
    for (const [id, peer] of alive) instances.set(id, peer);
    for (const [id, until] of unreachable) if (until <= Date.now()) unreachable.delete(id);
    for (const [nodeId, before] of waiting) reindex(nodeId, before);
  };

  const resync = async () => {
    await readInstances();
    const held = new Map<string, Map<string, Registration>>();
    for (const { id, value } of await registry.list(NODES)) {
      const registration = JSON.parse(value) as Registration;
      const nodeId = id.slice(0, id.lastIndexOf('@'));
      if (registration.i !== instanceId && !instances.has(registration.i)) {
        // Its holder stopped without withdrawing it (a crash): nobody else will.
        await registry.remove(NODES, id).catch(warn('removing a stale registration'));
        continue;
      }
      if (!usable(registration)) continue;
      const holders = held.get(nodeId) ?? new Map<string, Registration>();
      holders.set(registration.i, registration);
      held.set(nodeId, holders);
    }
    for (const nodeId of [...remote.keys()]) if (!held.has(nodeId)) applyHolders(nodeId, undefined);
    for (const [nodeId, holders] of held) applyHolders(nodeId, holders);
  };

  const announce = () =>
    registry.put(
      INSTANCES,
      instanceId,
      JSON.stringify({ peer: options.peerAddress }),
      timing.instanceTtlMs,
    );
  const put = (nodeId: string, registration: Registration) =>
    registry.put(
      NODES,
      entryId(nodeId, instanceId),
      JSON.stringify(registration),
      NODE_ENTRY_TTL_MS,
    );
  const register = (nodeId: string, registration: Registration) =>
    put(nodeId, registration).catch(warn('registering a node failed'));

  /**
   * After Redis was out of reach: a Redis that restarted empty holds neither this
   * instance's announcement nor its registrations (renewed only hourly), so both are
   * written again and the nodes announced to the others, then the registry is read.
   * Until all of it worked it is tried again at every announcement round: on the
   * subscriber's reconnection the command connection may still be down.
   */
  let rejoinNeeded = false;
  const rejoin = async () => {
    await announce();
    await Promise.all([...local].map(([nodeId, registration]) => put(nodeId, registration)));
    for (const [nodeId, registration] of local) void send({ t: 'up', n: nodeId, r: registration });
    await resync();
  };
  const tryRejoin = () =>
    rejoin().then(
      () => {
        rejoinNeeded = false;
      },
      (error: unknown) => {
        rejoinNeeded = true;
        warn('registering this instance again failed')(error);
      },
    );
  const unsubscribe = broadcast.subscribe(TOPIC, onMessage, () => void tryRejoin());
  const announcer = setInterval(() => {
    announce().then(
      () => {
        failing.clear();
        if (rejoinNeeded) void tryRejoin();
      },
      (error: unknown) => {
        rejoinNeeded = true;
        warn('announcing this instance failed')(error);
      },
    );
    readInstances().catch(warn('reading instances failed'));
  }, timing.announceMs);
  const resyncer = setInterval(
    () => void resync().catch(warn('reading the node registry failed')),
    timing.resyncMs,
  );
  const renewer = setInterval(() => {
    for (const [nodeId, registration] of local) void register(nodeId, registration);
  }, NODE_ENTRY_RENEW_MS);
  for (const timer of [announcer, resyncer, renewer]) timer.unref();
  void announce().catch(warn('announcing this instance failed'));

  return {
    addNodeExits(nodeId, exits) {
      index.addNodeExits(nodeId, exits);
      if (!options.isLocalAgent(nodeId)) return;
      const registration: Registration = {
        i: instanceId,
        at: Date.now(),
        exits: [...exits],
        states: options.exitStates(nodeId),
      };
      local.set(nodeId, registration);
      arrived(nodeId);
      void register(nodeId, registration);
      void send({ t: 'up', n: nodeId, r: registration });
    },
    removeNodeExits(nodeId) {
      index.removeNodeExits(nodeId);
      if (!local.delete(nodeId)) return;
      void registry
        .remove(NODES, entryId(nodeId, instanceId))
        .catch(warn('withdrawing a node failed'));
      void send({ t: 'down', n: nodeId, i: instanceId, ...(leaving ? { m: true as const } : {}) });
      // It may have moved to another instance already, or be held by another worker of
      // this host: lease it there.
      const elsewhere = chosen(nodeId);
      if (elsewhere) index.addNodeExits(nodeId, elsewhere.exits);
    },
    remote: remoteOf,
    async holder(nodeId, waitMs, signal) {
      const now = () => {
        if (local.has(nodeId) || options.isLocalAgent(nodeId)) return 'here' as const;
        return remoteOf(nodeId);
      };
      const found = now();
      if (found || !moving.has(nodeId) || signal.aborted) return found;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          waiters.get(nodeId)?.delete(done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal.addEventListener('abort', done, { once: true });
        let set = waiters.get(nodeId);
        if (!set) {
          set = new Set();
          waiters.set(nodeId, set);
        }
        set.add(done);
      });
      return now();
    },
    draining() {
      leaving = true;
    },
    leaving: () => leaving,
    moving(nodeId, fromInstance) {
      if (remote.get(nodeId)?.has(fromInstance) && !local.has(nodeId)) {
        leftMoving(nodeId, fromInstance);
      }
    },
    async peers() {
      // An instance that started a moment ago may not have been read yet (a proof reaching
      // a new worker): the registry is the truth, and proofs are rare.
      await readInstances().catch(warn('reading instances failed'));
      return [...instances]
        .filter(([id]) => id !== instanceId && (unreachable.get(id) ?? 0) <= Date.now())
        .map(([, peer]) => peer);
    },
    unreachable(id) {
      if (unreachable.has(id)) return;
      // Still announced after this, it was a passing failure: the next resync brings it back.
      unreachable.set(id, Date.now() + timing.instanceTtlMs);
      logger.warn({ instance: id }, 'an instance does not answer: its nodes are set aside');
      for (const [nodeId, holders] of [...remote]) {
        if (holders.has(id)) applyRemote(nodeId, id, undefined);
      }
    },
    async deleted(nodeId) {
      await send({ t: 'delete', n: nodeId });
    },
    resync,
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of [announcer, resyncer, renewer]) clearInterval(timer);
      for (const timer of moving.values()) clearTimeout(timer);
      unsubscribe();
      const withdrawals = [...local.keys()].map((nodeId) =>
        registry.remove(NODES, entryId(nodeId, instanceId)),
      );
      await Promise.allSettled([
        ...withdrawals,
        registry.remove(INSTANCES, instanceId),
        broadcast.publish(TOPIC, JSON.stringify({ t: 'bye', i: instanceId } satisfies Message)),
      ]);
    },
  };
}
