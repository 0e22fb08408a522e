/**
 * The upstream-proxy nodes this gateway carries streams through, kept online only while
 * their proxy accepts TCP connections.
 *
 * Health: every probe interval each node's proxy gets one TCP connection (closed at once,
 * nothing sent). A refusal or silence takes the node's exits out of the gateway's index
 * (new connections get no_exit_available or session_exit_gone, like an agent going away);
 * the first accepted connection puts them back. A stream that cannot reach the proxy
 * asks for an early probe, so a dead proxy leaves the index within one connect attempt.
 * The same round reloads the list from the database, so a node registered through
 * another server sharing it is picked up within one interval.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { ipcolaError, isIPColaError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import { connectToProxy } from './dial.ts';
import type { UpstreamNode } from './registry.ts';
import type { UpstreamDialer } from './upstream-dialer.ts';

/**
 * How long a probe waits for the proxy to accept. Not tied to the interval: a refusal
 * is reported at once anyway, and a short interval must not turn a busy event loop
 * into a proxy that looks dead.
 */
const PROBE_TIMEOUT_MS = 5_000;

export interface UpstreamExitsOptions {
  dialer: UpstreamDialer;
  /** Every live upstream node (the database); read at start and on every probe round. */
  load(): Promise<UpstreamNode[]>;
  probeIntervalMs: number;
  logger: Logger;
}

/** Told as the hub tells of agent nodes, so that one listener keeps the gateway's exits. */
export interface UpstreamExitsEvents {
  /** The node's exits may be leased now. */
  'node-up': [node: UpstreamNode];
  /** The node's exits must not be leased any more. */
  'node-down': [event: { nodeId: string }];
}

export interface UpstreamExits extends EventEmitter<UpstreamExitsEvents> {
  /** Loads the nodes, puts each online, and starts probing. */
  start(): Promise<void>;
  /** A node registered just now: online at once, probed from now on. */
  add(node: UpstreamNode): void;
  /** A node deleted just now: offline at once, no longer probed. */
  remove(nodeId: string): void;
  /** Whether streams for this node id go through an upstream proxy. */
  has(nodeId: string): boolean;
  /**
   * A stream to target through the node's proxy, leaving from exitIp. `signal` aborts
   * the dial (the socket to the proxy is destroyed); it rejects with the signal's reason.
   */
  openStream(
    nodeId: string,
    exitIp: string,
    target: { host: string; port: number },
    signal?: AbortSignal,
  ): Promise<Socket>;
  /** Stops probing and reloading; aborts probes in flight. */
  close(): void;
}

interface Tracked {
  node: UpstreamNode;
  online: boolean;
  probing: boolean;
  /** When it was added, in add() calls: a reload only drops nodes it could have seen. */
  added: number;
}

export function createUpstreamExits(options: UpstreamExitsOptions): UpstreamExits {
  const { dialer, logger } = options;
  const events = new EventEmitter<UpstreamExitsEvents>();
  const announceUp = (node: UpstreamNode) => events.emit('node-up', node);
  const announceDown = (nodeId: string) => events.emit('node-down', { nodeId });
  const tracked = new Map<string, Tracked>();
  const stop = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let reloading = false;
  let adds = 0;

  const setOnline = (entry: Tracked, online: boolean) => {
    if (entry.online === online || tracked.get(entry.node.id) !== entry) return;
    entry.online = online;
    if (online) announceUp(entry.node);
    else announceDown(entry.node.id);
    logger.info(
      { node: entry.node.id, proxy: `${entry.node.proxy.host}:${entry.node.proxy.port}` },
      online
        ? 'upstream proxy accepts connections: exits online'
        : 'upstream proxy down: exits offline',
    );
  };

  const probe = async (entry: Tracked): Promise<void> => {
    if (entry.probing || stop.signal.aborted) return;
    entry.probing = true;
    try {
      const { proxy } = entry.node;
      const addresses = await dialer.resolveProxy(proxy, PROBE_TIMEOUT_MS, stop.signal);
      const socket = await connectToProxy(addresses, proxy.port, PROBE_TIMEOUT_MS, stop.signal);
      socket.destroy();
      if (!stop.signal.aborted) setOnline(entry, true);
    } catch (error) {
      if (!stop.signal.aborted) {
        if (entry.online)
          logger.debug({ err: error, node: entry.node.id }, 'upstream probe failed');
        setOnline(entry, false);
      }
    } finally {
      entry.probing = false;
    }
  };

  const add = (node: UpstreamNode) => {
    const previous = tracked.get(node.id);
    if (previous) {
      tracked.delete(node.id);
      if (previous.online) announceDown(node.id);
    }
    // Online at once (a node registered just now is usable at once); the probe that
    // starts now takes it out again if its proxy does not answer.
    const entry: Tracked = { node, online: true, probing: false, added: ++adds };
    tracked.set(node.id, entry);
    announceUp(node);
    void probe(entry);
  };

  const remove = (nodeId: string) => {
    const entry = tracked.get(nodeId);
    if (!entry) return;
    tracked.delete(nodeId);
    if (entry.online) announceDown(nodeId);
  };

  const reload = async () => {
    const before = adds;
    const nodes = await options.load();
    const live = new Set(nodes.map((node) => node.id));
    for (const [id, entry] of tracked) {
      // A node added while the list was being read (just registered) is not in it yet.
      if (live.has(id) || entry.added > before) continue;
      tracked.delete(id);
      if (entry.online) announceDown(id);
    }
    for (const node of nodes) if (!tracked.has(node.id)) add(node);
  };

  // Each node's probe and the reload run on their own: a silent proxy holds up nothing.
  const runRound = () => {
    for (const entry of tracked.values()) void probe(entry);
    if (reloading) return;
    reloading = true;
    reload()
      .catch((error) => {
        // The database may be restarting: keep probing the nodes already known.
        logger.warn({ err: error }, 'reloading upstream nodes failed; keeping the known ones');
      })
      .finally(() => {
        reloading = false;
      });
  };

  const exits: Omit<UpstreamExits, keyof EventEmitter> = {
    async start() {
      await reload();
      timer = setInterval(runRound, options.probeIntervalMs);
      timer.unref();
    },
    add,
    remove,
    has: (nodeId) => tracked.has(nodeId),
    async openStream(nodeId, exitIp, target, signal) {
      const entry = tracked.get(nodeId);
      if (!entry) throw ipcolaError('exit_failed', `upstream node ${nodeId} is gone`);
      try {
        return await dialer.open(entry.node.proxy, exitIp, target, signal);
      } catch (error) {
        // The node's own failure (proxy unreachable, credentials refused): check it now
        // rather than at the next round, so that other connections stop choosing it. A
        // cancelled dial says nothing about the node.
        const nodesFault = !isIPColaError(error) || error.code === 'exit_failed';
        if (nodesFault && !signal?.aborted) void probe(entry);
        throw error;
      }
    },
    close() {
      clearInterval(timer);
      stop.abort();
    },
  };
  return Object.assign(events, exits);
}
