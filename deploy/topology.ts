/**
 * The production topology, described once: what `npm run cluster` starts as local
 * processes and what `docker-compose.yml` and `deploy/haproxy.cfg` declare. A test holds
 * the compose file and the HAProxy configuration equal to this description.
 *
 * Customers reach the load balancer; exit-node agents dial the instances' hubs directly,
 * their home instance first and the other when it is gone (`--hub a,b`), and any instance
 * reaches any exit through the instance holding it. The hub is deliberately not behind
 * the balancer: an exit IP is proven by a connection from that address (README, Proven
 * exit IPs), and a TCP balancer hides the source address (its own arrives instead).
 */

export type Role = 'api' | 'proxy' | 'socks' | 'hub';

export type Ports = Record<Role, number>;

/** The ports a server listens on inside its container (the server's defaults). */
export const CONTAINER_PORTS: Ports = { api: 8080, proxy: 8000, socks: 1080, hub: 7000 };

export interface InstanceSpec {
  /** The compose service and the cluster's name for it. */
  readonly name: string;
  /** Its ports on this machine under `npm run cluster` (the hub's is also published by compose). */
  readonly ports: Ports;
}

export interface AgentSpec {
  readonly name: string;
  readonly country: string;
  /** The exit IP under `npm run cluster`: 127.0.0.0/8 is all local on Linux, as in the demo. */
  readonly exitIp: string;
  /** The agent container's fixed address on the compose network, its exit IP there. */
  readonly containerIp: string;
  /** The instance whose hub the agent dials first (its home); the others follow in `--hub`. */
  readonly instance: string;
}

/** The hubs an agent dials, as `--hub` takes them: its home instance first, then the others. */
export function hubsOf<T>(
  agent: AgentSpec,
  instances: readonly InstanceSpec[],
  hub: (instance: InstanceSpec) => T,
): T[] {
  const home = instances.filter((instance) => instance.name === agent.instance);
  return [...home, ...instances.filter((instance) => instance.name !== agent.instance)].map(hub);
}

/** How the balancer tells a server is fit to take connections. */
export type HealthCheck =
  /** A GET answered 200, on the port of role `on` (the API's /readyz for every frontend). */
  | { readonly kind: 'http'; readonly path: string; readonly on: Exclude<Role, 'hub'> }
  | { readonly kind: 'tcp' };

export interface FrontendSpec {
  readonly role: Exclude<Role, 'hub'>;
  /** Where the balancer listens, on this machine and published by compose. */
  readonly port: number;
  readonly check: HealthCheck;
  /**
   * How the balancer passes each customer's address on, so that the servers' per-address
   * limits (failed sign-ins, sign-ups) and password-less ranges see the customer, not the
   * balancer: `proxy-protocol` starts each connection with a PROXY v2 header (HAProxy's
   * `send-proxy-v2`; the servers' PROXY_PROTOCOL_FROM), `forwarded-for` balances HTTP
   * and sets X-Forwarded-For (the servers' TRUST_PROXY). Both are believed from the
   * balancer's address alone.
   */
  readonly clientAddress: 'proxy-protocol' | 'forwarded-for';
}

export interface Topology {
  readonly instances: readonly InstanceSpec[];
  readonly agents: readonly AgentSpec[];
  readonly loadBalancer: {
    readonly name: string;
    /**
     * leastconn: tunnels live for minutes while forwarded requests last milliseconds, so
     * counting open connections spreads load better than taking turns.
     */
    readonly balance: 'leastconn' | 'roundrobin';
    readonly frontends: readonly FrontendSpec[];
    /**
     * The address the balancer dials the servers from, the one PROXY_PROTOCOL_FROM and
     * TRUST_PROXY name:
     * its fixed address on the compose network, and a loopback address of its own for
     * `npm run cluster` (so that a client dialling an instance directly from 127.0.0.1
     * still needs no header).
     */
    readonly containerIp: string;
    readonly localIp: string;
  };
  /** The compose network the agents' fixed addresses are on. */
  readonly network: { readonly name: string; readonly subnet: string };
  readonly database: { readonly service: string };
  readonly redis: { readonly service: string };
}

/**
 * Every frontend checks the API's /readyz, the proxy ports too: a stopping instance
 * answers it 503 `draining` for SHUTDOWN_DELAY_MS while it still serves, so the balancer
 * takes it out before its ports close. With a TCP check on the proxy ports, a connection
 * sent in the instant the port closed was reset (1 of 737 requests in a roll).
 */
const READY: HealthCheck = { kind: 'http', path: '/readyz', on: 'api' };

export const topology: Topology = {
  instances: [
    { name: 'server-1', ports: { api: 8081, proxy: 8001, socks: 1081, hub: 7001 } },
    { name: 'server-2', ports: { api: 8082, proxy: 8002, socks: 1082, hub: 7002 } },
  ],
  // Each agent's home hub; any instance reaches every exit, and an agent whose instance
  // is gone attaches to the other within a second (`--hub` names both, home first).
  agents: [
    {
      name: 'agent-de',
      country: 'de',
      exitIp: '127.0.0.12',
      containerIp: '172.28.0.12',
      instance: 'server-1',
    },
    {
      name: 'agent-us-1',
      country: 'us',
      exitIp: '127.0.0.13',
      containerIp: '172.28.0.13',
      instance: 'server-1',
    },
    {
      name: 'agent-us-2',
      country: 'us',
      exitIp: '127.0.0.14',
      containerIp: '172.28.0.14',
      instance: 'server-2',
    },
  ],
  loadBalancer: {
    name: 'haproxy',
    balance: 'leastconn',
    frontends: [
      { role: 'api', port: 8080, check: READY, clientAddress: 'forwarded-for' },
      { role: 'proxy', port: 8000, check: READY, clientAddress: 'proxy-protocol' },
      { role: 'socks', port: 1080, check: READY, clientAddress: 'proxy-protocol' },
    ],
    containerIp: '172.28.0.5',
    localIp: '127.0.0.60',
  },
  network: { name: 'ipcola', subnet: '172.28.0.0/24' },
  database: { service: 'postgres' },
  redis: { service: 'redis' },
};
