/**
 * The production topology, described once: what `npm run cluster` starts as local
 * processes and what `docker-compose.yml` and `deploy/haproxy.cfg` declare. A test holds
 * the compose file and the HAProxy configuration equal to this description.
 *
 * Customers reach the load balancer; exit-node agents dial one instance's hub directly.
 * The hub is deliberately not behind the balancer: an exit IP is proven by a connection
 * from that address (README, Proven exit IPs), and a TCP balancer hides the source
 * address (its own arrives instead). Tried with HAProxy in front of both hubs: the
 * agent's proof also reached the other instance, which answered 404, and the exit
 * stayed `pending`.
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
  /** The instance whose hub the agent dials. */
  readonly instance: string;
}

/** How the balancer tells a server is fit to take connections. */
export type HealthCheck =
  | { readonly kind: 'http'; readonly path: string }
  | { readonly kind: 'tcp' };

export interface FrontendSpec {
  readonly role: Exclude<Role, 'hub'>;
  /** Where the balancer listens, on this machine and published by compose. */
  readonly port: number;
  readonly check: HealthCheck;
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
  };
  /** The compose network the agents' fixed addresses are on. */
  readonly network: { readonly name: string; readonly subnet: string };
  readonly database: { readonly service: string };
  readonly redis: { readonly service: string };
}

const READY: HealthCheck = { kind: 'http', path: '/readyz' };
const TCP: HealthCheck = { kind: 'tcp' };

export const topology: Topology = {
  instances: [
    { name: 'server-1', ports: { api: 8081, proxy: 8001, socks: 1081, hub: 7001 } },
    { name: 'server-2', ports: { api: 8082, proxy: 8002, socks: 1082, hub: 7002 } },
  ],
  // Both instances hold a `us` exit, so `-country-us` works through either one even
  // before any instance reaches every exit; `de` is held by server-1 alone.
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
      { role: 'api', port: 8080, check: READY },
      { role: 'proxy', port: 8000, check: TCP },
      { role: 'socks', port: 1080, check: TCP },
    ],
  },
  network: { name: 'ipcola', subnet: '172.28.0.0/24' },
  database: { service: 'postgres' },
  redis: { service: 'redis' },
};
