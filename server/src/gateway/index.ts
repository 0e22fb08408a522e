import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { GATEWAY_OPEN_TIMEOUT_MS } from '@ipcola/shared/protocol';
import type { KeyStanding } from '../accounts/index.ts';
import type { AuthFailureLimit } from '../auth-failures/index.ts';
import type { PriceBook } from '../billing/index.ts';
import { proxyHeaderLength } from '../listeners/proxy-protocol.ts';
import type { Logger } from '../log/index.ts';
import { SocketMeter, type UsageMeter } from '../metering/index.ts';
import type { GatewayObserver } from '../metrics/index.ts';
import type { AllowanceLedger, SessionTable } from '../store/index.ts';
import { type Access, createAccess, type PasswordlessKey, type ProxyKey } from './access.ts';
import {
  type Allowance,
  type Allowances,
  createAllowances,
  unlimitedAllowances,
} from './allowance.ts';
import { type Connector, createConnector, type Target, type Upstream } from './connector.ts';
import { type Exit, ExitIndex, type ExitType, type RegionCount } from './exit-index.ts';
import { createForwarder } from './forwarder.ts';
import { createHttpProxyServer, resetSocket } from './http-proxy.ts';
import type { NodeExit } from './node-exits.ts';
import { OpenTunnels } from './open-tunnels.ts';
import { asProxyRefusal } from './refusal.ts';
import { createSocks5Server } from './socks5.ts';
import { createSpendGuard, type SpendGuard } from './spend-guard.ts';

export type { Targeting } from './credentials.ts';
export { formatProxyUsername, parseProxyUsername } from './credentials.ts';
export { followNodes, type NodeExit } from './node-exits.ts';
export type { Exit, ExitIndex, ExitType, ProxyKey, RegionCount, Target };

export interface GatewayOptions {
  logger: Logger;
  sessions: SessionTable;
  usage: UsageMeter;
  verifyKey(keyId: string, secret: string): Promise<ProxyKey | null>;
  /** The live key whose password-less ranges hold a client address; none when absent. */
  passwordlessKey?: (address: string) => Promise<PasswordlessKey | null>;
  /**
   * Opens a stream to target through the exit's node (the hub or an upstream proxy);
   * `signal` aborts when the gateway gives up (its open timeout, or the client went
   * away), and whatever is still opening must stop.
   */
  openStream(exit: Exit, target: Target, signal: AbortSignal): Promise<Duplex>;
  /** Credit, monthly caps and revocation, enforced on new and open connections; none when absent. */
  limits?: {
    standing(keyIds: readonly string[], monthStart: Date): Promise<KeyStanding[]>;
    /** Where connections reserve the bytes they may move (hot state). */
    allowances: AllowanceLedger;
    /** Bytes asked for per grant (ALLOWANCE_CHUNK_BYTES). */
    chunkBytes: number;
    /** What customers pay per GB of each exit type: connections spend balances at their exit's. */
    prices: Pick<PriceBook, 'customerRate' | 'highestCustomerRate'>;
  };
  /** Told of opened connections, refusals and selection times (metrics). */
  observer?: GatewayObserver;
  /** Failed proxy sign-ins per client address; none counted when absent. */
  authFailures?: AuthFailureLimit;
  timeouts?: Partial<GatewayTimeouts>;
}

export interface GatewayTimeouts {
  /** Reading a request's headers, and a SOCKS handshake. */
  handshakeMs: number;
  /** No bytes either way on a connection or tunnel. */
  idleMs: number;
  /** Getting a stream to the target through the exit (GATEWAY_OPEN_TIMEOUT_MS by default). */
  openMs: number;
  /** How often open tunnels are metered. */
  meterMs: number;
  /** How long a key verification is reused (bounds revocation delay). */
  keyCacheMs: number;
  /** How often keys with open connections are checked for credit, caps and revocation. */
  limitCheckMs: number;
  /** How often this instance renews its liveness and releases the allowances of stopped ones. */
  reconcileMs: number;
  /**
   * How long what the database last said of a key (its verification, standing and limits)
   * still admits and grants while the database is down (OUTAGE_GRACE_MS).
   */
  outageGraceMs: number;
}

const DEFAULT_TIMEOUTS: GatewayTimeouts = {
  handshakeMs: 10_000,
  idleMs: 120_000,
  openMs: GATEWAY_OPEN_TIMEOUT_MS,
  meterMs: 2_000,
  keyCacheMs: 1_000,
  limitCheckMs: 500,
  reconcileMs: 5_000,
  outageGraceMs: 0,
};

export interface Gateway {
  readonly httpServer: HttpServer;
  readonly socksServer: Server;
  /** The exits this gateway can lease; the hub keeps it current. */
  readonly exits: ExitIndex;
  addNodeExits(nodeId: string, exits: readonly NodeExit[]): void;
  removeNodeExits(nodeId: string): void;
  /** The exit IPs of a node this gateway leases now. */
  nodeExitIps(nodeId: string): string[];
  regions(): RegionCount[];
  /** CONNECT and SOCKS5 tunnels open now. */
  openTunnels(): number;
  /** Client connections (tunnels and forwarded requests) open now, per key in use. */
  openConnections(): Map<string, number>;
  /** Sticky sessions made ahead of use (the leases API). */
  readonly sessions: Pick<Connector, 'pin' | 'inspect' | 'renew' | 'release'>;
  /** Stops metering timers and drops pooled upstream connections (listeners are closed by the caller). */
  close(): Promise<void>;
}

/** The customer-facing proxy: HTTP (forward + CONNECT) and SOCKS5 over one set of exits. */
export function createGateway(options: GatewayOptions): Gateway {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const exits = new ExitIndex();
  const nodeExits = new Map<string, string[]>();
  let guard: SpendGuard | undefined;
  const logger = options.logger.child({ role: 'gateway' });
  const onStale = staleLog(logger);
  const access: Access = createAccess({
    verifyKey: options.verifyKey,
    cacheTtlMs: timeouts.keyCacheMs,
    staleForMs: timeouts.outageGraceMs,
    onStale: (what, error) => onStale(what, error),
    checkKey: async (key) => guard?.admit(key.id),
    ...(options.authFailures ? { failures: options.authFailures } : {}),
    ...(options.passwordlessKey ? { passwordlessKey: options.passwordlessKey } : {}),
  });
  const connector: Connector = createConnector({
    exits,
    sessions: options.sessions,
    openStream: options.openStream,
    openTimeoutMs: timeouts.openMs,
    ...(options.observer ? { onSelect: options.observer.selected } : {}),
  });
  const forwarder = createForwarder({ idleTimeoutMs: timeouts.idleMs });
  const tunnels = new OpenTunnels(options.usage, timeouts.idleMs, timeouts.meterMs);
  const { limits } = options;
  let allowances: Allowances = unlimitedAllowances(1024 * 1024);
  let reconciler: NodeJS.Timeout | undefined;
  if (limits) {
    const onError = (error: unknown) =>
      logger.warn({ err: error }, 'allowances: hot state or the database did not answer');
    allowances = createAllowances({
      ledger: limits.allowances,
      standing: limits.standing,
      chunkBytes: limits.chunkBytes,
      prices: limits.prices,
      limitsTtlMs: timeouts.limitCheckMs * 2,
      staleForMs: timeouts.outageGraceMs,
      onStale: (error) => onStale('limits', error),
      onError,
    });
    const reconcile = () => {
      allowances.retry();
      limits.allowances.reconcile().then((released) => {
        if (released > 0) {
          logger.warn({ instances: released }, 'allowances held by stopped instances released');
        }
      }, onError);
    };
    reconcile();
    reconciler = setInterval(reconcile, timeouts.reconcileMs);
    reconciler.unref();
    guard = createSpendGuard({
      judge: (keyIds) => allowances.judge(keyIds),
      keysInUse: () => access.keysInUse(),
      cut(keyId, reason, admittedBefore) {
        const closed = access.cut(keyId, admittedBefore);
        if (closed > 0) logger.info({ key: keyId, reason, closed }, 'connections of a key cut');
      },
      enforce(keyId, rules) {
        const closed = access.enforce(keyId, rules);
        if (closed > 0)
          logger.info({ key: keyId, closed }, "connections outside a key's rules cut");
      },
      intervalMs: timeouts.limitCheckMs,
      staleForMs: timeouts.outageGraceMs,
      onStale: (error) => onStale('verdict', error),
      onError: (error) => logger.warn({ err: error }, 'key limits check failed'),
    });
  }

  const httpServer = createHttpProxyServer({
    access,
    allowances,
    connector,
    forwarder,
    tunnels,
    usage: options.usage,
    logger: logger.child({ protocol: 'http' }),
    headersTimeoutMs: timeouts.handshakeMs,
    idleTimeoutMs: timeouts.idleMs,
    ...(options.observer ? { observer: options.observer } : {}),
  });

  const refusedOverSocks = (error: unknown): never => {
    const refusal = asProxyRefusal(error);
    options.observer?.refused('socks5', refusal.code);
    // A store outage (a sticky session's pin) is answered as such; anything else unexpected
    // stays unexpected, for the listener to log.
    throw refusal.code === 'service_unavailable' ? refusal : error;
  };

  type SocksUpstream = Upstream & {
    destroy(): void;
    releaseSlot(): void;
    keyId: string;
    allowance: Allowance;
    /** What cutting the key's connections closes: the upstream, then the client once spliced. */
    cutter: { cut(): void };
  };
  const socksServer = createSocks5Server<Awaited<ReturnType<Access['admit']>>, SocksUpstream>({
    handshakeTimeoutMs: timeouts.handshakeMs,
    onHandshakeTimeout: () => options.observer?.refused('socks5', 'request_timeout'),
    logger: logger.child({ protocol: 'socks5' }),
    authenticate: (username, password, client) =>
      access.admit(username, password, client.address).catch(refusedOverSocks),
    admitWithoutAuthentication: async (client) => {
      const admission = await access
        .admitWithoutCredentials(client.address)
        .catch(refusedOverSocks);
      // No key for the address: refused as a client without credentials always was.
      if (!admission) options.observer?.refused('socks5', 'auth_required');
      return admission;
    },
    async connect(admission, target, client) {
      const cutter = { cut: () => {} };
      const releaseSlot = access.hold(admission.key, () => cutter.cut(), {
        address: client.address,
        country: admission.credentials.targeting.country,
      });
      let allowance: Allowance | undefined;
      let upstream: Upstream;
      try {
        allowance = await allowances.open(admission.key);
        upstream = await connector.open(
          admission,
          { host: target.host, port: target.port },
          client.gone,
        );
        allowance.priceAt(upstream.exit);
      } catch (error) {
        allowance?.close();
        releaseSlot();
        // The client left while its stream opened: nobody was refused.
        if (error === client.gone.reason) throw error;
        return refusedOverSocks(error);
      }
      cutter.cut = () => upstream.stream.destroy();
      return {
        ...upstream,
        keyId: admission.key.id,
        allowance,
        releaseSlot,
        cutter,
        destroy() {
          upstream.stream.destroy();
          upstream.release();
          allowance.close();
          releaseSlot();
        },
      };
    },
    tunnel(client, upstream) {
      upstream.cutter.cut = () => resetSocket(client);
      options.observer?.opened('socks5');
      tunnels.run(
        {
          client,
          upstream: upstream.stream,
          keyId: upstream.keyId,
          allowance: upstream.allowance,
          nodeId: upstream.exit.nodeId,
          country: upstream.exit.country ?? '',
          onEnd: () => {
            upstream.release();
            upstream.releaseSlot();
          },
        },
        new SocketMeter(client, proxyHeaderLength(client)),
      );
    },
  });

  return {
    httpServer,
    socksServer,
    exits,
    addNodeExits(nodeId, announced) {
      // The same exits placed anew keep their pooled upstream connections.
      const ips = announced.map((exit) => exit.ip);
      const gone = (nodeExits.get(nodeId) ?? []).filter((ip) => !ips.includes(ip));
      for (const exit of exits.removeNode(nodeId, gone)) forwarder.drop(exit.id);
      for (const exit of announced) exits.add({ ...exit, id: `${nodeId}/${exit.ip}`, nodeId });
      nodeExits.set(nodeId, ips);
    },
    removeNodeExits(nodeId) {
      const ips = nodeExits.get(nodeId) ?? [];
      for (const exit of exits.removeNode(nodeId, ips)) forwarder.drop(exit.id);
      nodeExits.delete(nodeId);
    },
    nodeExitIps: (nodeId) => [...(nodeExits.get(nodeId) ?? [])],
    regions: () => exits.regions(),
    openTunnels: () => tunnels.size,
    openConnections: () =>
      new Map(access.keysInUse().map((keyId) => [keyId, access.openConnections(keyId)])),
    sessions: connector,
    async close() {
      guard?.close();
      clearInterval(reconciler);
      tunnels.close();
      await forwarder.close();
    },
  };
}

/** One warning per kind of stand-in answer and this long, however many connections use it. */
const STALE_LOG_INTERVAL_MS = 60_000;

/**
 * Logs that the gateway runs on the database's last answers (README, "When PostgreSQL or
 * Redis is down"): once per kind (`key`, `address`, `verdict`, `limits`) and minute.
 */
function staleLog(logger: Logger): (what: string, error: unknown) => void {
  const last = new Map<string, number>();
  return (what, error) => {
    const at = Date.now();
    if (at - (last.get(what) ?? Number.NEGATIVE_INFINITY) < STALE_LOG_INTERVAL_MS) return;
    last.set(what, at);
    logger.warn(
      { err: error, standIn: what },
      'a store is unavailable: running on the last answers it gave',
    );
  };
}
