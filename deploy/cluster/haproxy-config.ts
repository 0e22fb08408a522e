/**
 * HAProxy's configuration from the topology: one TCP frontend and backend per customer
 * port, every instance in each backend, health-checked. The same text serves
 * `npm run cluster` (loopback addresses, a stats socket it polls) and docker compose
 * (`deploy/haproxy.cfg`, service names resolved by Docker's DNS).
 */
import { CONTAINER_PORTS, type Role, type Topology } from '../topology.ts';

export interface HaproxyConfigOptions {
  /** Where the frontends listen: `127.0.0.1` locally, `*` in a container. */
  bindHost: string;
  /** `host:port` of one instance's port of a role, as the balancer dials it. */
  serverAddress(instance: string, role: Exclude<Role, 'hub'>): string;
  /** The balancer's ports, when not the topology's (free ports in tests). */
  frontendPorts?: Partial<Record<Exclude<Role, 'hub'>, number>>;
  /** A socket answering `show stat` (the cluster waits on it for servers to be up). */
  statsSocket?: string;
  /** A DNS server for service names that may not resolve yet when HAProxy starts. */
  nameserver?: string;
  /** The address the servers are dialled from (the one their PROXY_PROTOCOL_FROM names). */
  source?: string;
}

export function haproxyConfig(topology: Topology, options: HaproxyConfigOptions): string {
  const lines = [
    `# Generated from deploy/topology.ts by deploy/cluster/haproxy-config.ts; a test holds`,
    `# deploy/haproxy.cfg equal to it (node --import tsx deploy/write-haproxy-cfg.ts).`,
    'global',
    // No maxconn: HAProxy derives it from the file-descriptor limit (20,000 here, where
    // `maxconn 20000` would need 40,029 and refuse to start).
    ...(options.statsSocket
      ? [`    stats socket ${options.statsSocket} mode 600 level admin`]
      : []),
    '',
    ...(options.nameserver
      ? ['resolvers dns', `    nameserver dns ${options.nameserver}`, '    hold valid 10s', '']
      : []),
    'defaults',
    // TCP for the proxy ports: the gateway reads the proxy protocols itself, and tunnels
    // are opaque. The API's frontend balances HTTP, to set X-Forwarded-For.
    '    mode tcp',
    '    timeout connect 5s',
    // Tunnels may sit idle for long; the gateway cuts idle half-open ones itself.
    '    timeout client 1h',
    '    timeout server 1h',
    '    timeout check 2s',
    // A connection refused by a dead instance is tried again on the other one.
    '    retries 3',
    '    option redispatch',
    // Checked every second: a killed instance leaves the pool within about 2 s.
    `    default-server inter 1s fall 2 rise 2${options.nameserver ? ' resolvers dns init-addr last,libc,none' : ''}`,
    ...(options.source ? [`    source ${options.source}`] : []),
  ];
  for (const frontend of topology.loadBalancer.frontends) {
    const port = options.frontendPorts?.[frontend.role] ?? frontend.port;
    lines.push('', `frontend ${frontend.role}`, `    bind ${options.bindHost}:${port}`);
    const http = frontend.clientAddress === 'forwarded-for';
    if (http) {
      // Only the balancer's word counts: what a client wrote in these is dropped.
      lines.push(
        '    mode http',
        '    http-request del-header x-forwarded-for',
        '    http-request del-header x-forwarded-proto',
      );
    }
    lines.push(
      `    default_backend ${frontend.role}`,
      '',
      `backend ${frontend.role}`,
      `    balance ${topology.loadBalancer.balance}`,
    );
    if (http) lines.push('    mode http', '    option forwardfor');
    if (frontend.check.kind === 'http') {
      lines.push(
        '    option httpchk',
        `    http-check send meth GET uri ${frontend.check.path}`,
        '    http-check expect status 200',
      );
    }
    for (const instance of topology.instances) {
      const address = options.serverAddress(instance.name, frontend.role);
      // Checked on another role's port (the API's /readyz): `check port`.
      const checked =
        frontend.check.kind === 'http' && frontend.check.on !== frontend.role
          ? ` port ${options.serverAddress(instance.name, frontend.check.on).split(':').at(-1)}`
          : '';
      // The health check goes to /readyz without the header (no check-send-proxy).
      const proxyProtocol = frontend.clientAddress === 'proxy-protocol' ? ' send-proxy-v2' : '';
      lines.push(`    server ${instance.name} ${address} check${checked}${proxyProtocol}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** `deploy/haproxy.cfg`: the balancer of docker-compose.yml, dialling the server services. */
export function composeHaproxyConfig(topology: Topology): string {
  return haproxyConfig(topology, {
    bindHost: '*',
    serverAddress: (instance, role) => `${instance}:${CONTAINER_PORTS[role]}`,
    // Docker's embedded DNS: a server container may start after the balancer.
    nameserver: '127.0.0.11:53',
  });
}
