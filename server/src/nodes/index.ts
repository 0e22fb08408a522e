/**
 * Exit nodes as the control API sees them live: agents connected to the hub and
 * upstream-proxy nodes, whose exits the gateway leases. The database keeps who owns
 * them (accounts); this says what they do now.
 */
import type { Duplex } from 'node:stream';
import type { Cluster, ClusterOptions, ExitState } from '../cluster/index.ts';
import type { Exit, ExitIndex, Gateway, Target } from '../gateway/index.ts';
import type { Hub } from '../hub/index.ts';
import type {
  RegisteredUpstreamNode,
  UpstreamExits,
  UpstreamRegistration,
  UpstreamRegistry,
} from '../upstream/index.ts';

export interface LiveNodesOptions {
  hub: Pick<Hub, 'node' | 'disconnect'>;
  gateway: Pick<Gateway, 'nodeExitIps' | 'removeNodeExits'> & { exits: Pick<ExitIndex, 'get'> };
  upstreams: Pick<UpstreamExits, 'add' | 'remove'>;
  registry: Pick<UpstreamRegistry, 'register'>;
  /** Nodes held by other instances, and how a deletion reaches their holder. */
  cluster: Pick<Cluster, 'remote' | 'deleted'>;
}

/** One exit IP of a node as its operator sees it: proven or not, and where it was placed. */
export interface NodeExitStatus {
  readonly ip: string;
  readonly state: 'verified' | 'pending' | 'mismatch' | 'duplicate' | 'declared';
  readonly publicIp?: string;
  /** Where the gateway placed it; absent while it carries no traffic. */
  readonly place?: Pick<Exit, 'country' | 'region' | 'city' | 'asn' | 'asOrganization'>;
}

export interface NodeStatus {
  online: boolean;
  exitIps: string[];
  exits: NodeExitStatus[];
}

export interface LiveNodes {
  /** Online, and the exit IPs it announces (an agent) or the gateway leases (an upstream proxy). */
  status(nodeId: string): NodeStatus;
  /** A node was deleted: its tunnel is closed and its exits leave the pool. */
  deleted(nodeId: string): void;
  /** Stores an upstream-proxy node and makes its exits leasable at once. */
  register(accountId: string, registration: UpstreamRegistration): Promise<RegisteredUpstreamNode>;
}

export function createLiveNodes(options: LiveNodesOptions): LiveNodes {
  const { hub, gateway, upstreams, registry, cluster } = options;
  return {
    status(nodeId) {
      const placed = (ip: string) => {
        const exit = gateway.exits.get(`${nodeId}/${ip}`);
        if (!exit) return {};
        const { country, region, city, asn, asOrganization } = exit;
        return { place: { country, region, city, asn, asOrganization } };
      };
      const connected = hub.node(nodeId);
      if (connected) {
        return {
          online: true,
          exitIps: [...connected.hello.exitIps],
          exits: exitStatesOf(connected).map((exit) => ({ ...exit, ...placed(exit.ip) })),
        };
      }
      const held = cluster.remote(nodeId);
      if (held) {
        const exits = held.states as unknown as Array<Omit<NodeExitStatus, 'place'>>;
        return {
          online: true,
          exitIps: exits.map((exit) => exit.ip),
          exits: exits.map((exit) => ({ ...exit, ...placed(exit.ip) })),
        };
      }
      const exitIps = gateway.nodeExitIps(nodeId);
      const exits = exitIps.map((ip) => ({ ip, state: 'declared' as const, ...placed(ip) }));
      return { online: exitIps.length > 0, exitIps, exits };
    },
    deleted(nodeId) {
      hub.disconnect(nodeId);
      void cluster.deleted(nodeId);
      upstreams.remove(nodeId);
      gateway.removeNodeExits(nodeId);
    },
    async register(accountId, registration) {
      const node = await registry.register(accountId, registration);
      upstreams.add(node);
      return node;
    },
  };
}

/** An agent's exit IPs with their proof states, without their places. */
function exitStatesOf(
  node: NonNullable<ReturnType<Hub['node']>>,
): Array<Omit<NodeExitStatus, 'place'>> {
  return node.exits.map(({ ip, state, publicIp }) => ({
    ip,
    state,
    ...(publicIp !== undefined ? { publicIp } : {}),
  }));
}

/** The hub as the cluster sees it: which nodes it holds, and streams through them. */
export function clusterHub(
  hub: Pick<Hub, 'node' | 'openStream' | 'disconnect' | 'judgeProof'>,
): ClusterOptions['hub'] {
  return {
    judgeProof: (claim) => hub.judgeProof(claim),
    holds: (nodeId) => hub.node(nodeId) !== undefined,
    exitStates: (nodeId) => {
      const node = hub.node(nodeId);
      return node ? (exitStatesOf(node) as unknown as ExitState[]) : [];
    },
    openStream: ({ nodeId, exitIp, host, port }, signal) =>
      hub.openStream(nodeId, { host, port, exitIp, signal }),
    disconnect: (nodeId) => {
      hub.disconnect(nodeId);
    },
  };
}

/**
 * How the gateway opens a stream through an exit: through the supplier's proxy for an
 * upstream-proxy node, through the node's tunnel when this instance's hub holds it, else
 * over the hop to the instance that does. `signal` stops any of them.
 */
export function streamOpener(
  hub: Pick<Hub, 'openStream' | 'node'>,
  upstreams: Pick<UpstreamExits, 'has' | 'openStream'>,
  cluster: () => Pick<Cluster, 'openStream'>,
): (exit: Exit, target: Target, signal: AbortSignal) => Promise<Duplex> {
  return (exit, target, signal) => {
    if (upstreams.has(exit.nodeId)) {
      return upstreams.openStream(exit.nodeId, exit.ip, target, signal);
    }
    if (hub.node(exit.nodeId)) {
      return hub.openStream(exit.nodeId, { ...target, exitIp: exit.ip, signal });
    }
    return cluster().openStream(exit, target, signal);
  };
}
