/**
 * Exit nodes as the control API sees them live: agents connected to the hub and
 * upstream-proxy nodes, whose exits the gateway leases. The database keeps who owns
 * them (accounts); this says what they do now.
 */
import type { Gateway } from '../gateway/index.ts';
import type { Hub } from '../hub/index.ts';
import type {
  RegisteredUpstreamNode,
  UpstreamExits,
  UpstreamRegistration,
  UpstreamRegistry,
} from '../upstream/index.ts';

export interface LiveNodesOptions {
  hub: Pick<Hub, 'node' | 'disconnect'>;
  gateway: Pick<Gateway, 'nodeExitIps' | 'removeNodeExits'>;
  upstreams: Pick<UpstreamExits, 'add' | 'remove'>;
  registry: Pick<UpstreamRegistry, 'register'>;
}

export interface LiveNodes {
  /** Online, and the exit IPs it announces (an agent) or the gateway leases (an upstream proxy). */
  status(nodeId: string): { online: boolean; exitIps: string[] };
  /** A node was deleted: its tunnel is closed and its exits leave the pool. */
  deleted(nodeId: string): void;
  /** Stores an upstream-proxy node and makes its exits leasable at once. */
  register(accountId: string, registration: UpstreamRegistration): Promise<RegisteredUpstreamNode>;
}

export function createLiveNodes(options: LiveNodesOptions): LiveNodes {
  const { hub, gateway, upstreams, registry } = options;
  return {
    status(nodeId) {
      const connected = hub.node(nodeId);
      if (connected) return { online: true, exitIps: [...connected.hello.exitIps] };
      const exitIps = gateway.nodeExitIps(nodeId);
      return { online: exitIps.length > 0, exitIps };
    },
    deleted(nodeId) {
      hub.disconnect(nodeId);
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
