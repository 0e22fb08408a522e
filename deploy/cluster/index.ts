/**
 * `npm run cluster` and the tests' cluster: the production topology (deploy/topology.ts)
 * as local processes against this machine's PostgreSQL and Redis: the server instances,
 * HAProxy in front of their customer ports, and exit-node agents on loopback exit IPs.
 * Every process is a handle that can be killed, stopped and started again.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { topology as defaultTopology, hubsOf, type Topology } from '../topology.ts';
import { type Customer, createCustomer, createOperator, type Operator } from './accounts.ts';
import { type Agent, createAgent } from './agent.ts';
import { banner } from './banner.ts';
import { createFreshDatabase, type FreshDatabase, LOCAL_POSTGRES } from './database.ts';
import { createInstance, type Instance } from './instance.ts';
import {
  allUp,
  checkHaproxy,
  type FrontendRole,
  type LoadBalancer,
  startLoadBalancer,
} from './load-balancer.ts';
import { startTarget, type Target } from './target.ts';

export type { ApiKey, Customer, Operator } from './accounts.ts';
export type { Agent } from './agent.ts';
export { composeHaproxyConfig, haproxyConfig } from './haproxy-config.ts';
export type { Instance } from './instance.ts';
export { allUp, type LoadBalancer, type ServerStates } from './load-balancer.ts';
export type { LogLine } from './process.ts';

export const LOCAL_REDIS = 'redis://127.0.0.1:6379';

/** Agents compile TypeScript on start; three at once on two busy cores can take 20 s. */
const NODE_UP_MS = 60_000;

export interface ClusterOptions {
  topology?: Topology;
  /** `topology`: the ports it names (`npm run cluster`); `free`: any free ones (tests). */
  ports?: 'topology' | 'free';
  /** Used as given; without it the cluster makes a fresh database and drops it at stop. */
  databaseUrl?: string;
  /** Where the fresh database is made (default: this machine's, user postgres). */
  baseDatabaseUrl?: string;
  redisUrl?: string;
  /** More environment for the servers (after the cluster's defaults, before the ports). */
  env?: NodeJS.ProcessEnv;
  /** The agents' `--allow-target`: loopback, where the local target is. */
  allowTargets?: string[];
}

export interface Cluster {
  /** Logs, generated haproxy.cfg and the servers' data directories. */
  readonly dir: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly instances: readonly Instance[];
  readonly agents: readonly Agent[];
  readonly loadBalancer: LoadBalancer;
  readonly operator: Operator;
  readonly customer: Customer;
  readonly target: Target;
  instance(name: string): Instance;
  agent(name: string): Agent;
  /** The HTTP proxy through the balancer, with the key and a username suffix (`-country-us`). */
  proxyUrl(params?: string, via?: { proxy: number }): string;
  /** The API through the balancer with the customer's key as a bearer token. */
  api(pathname: string, init?: RequestInit): Promise<Response>;
  /** Resolves once every running agent's node is up on a running instance's hub. */
  agentsUp(timeoutMs?: number): Promise<void>;
  /** The running instance whose hub holds the agent's node now, if any. */
  holderOf(agentName: string): Instance | undefined;
  /** What `npm run cluster` prints. */
  banner(): string;
  /** Agents, target, balancer, instances; then the fresh database and the directory. */
  stop(): Promise<void>;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const topology = options.topology ?? defaultTopology;
  await checkHaproxy();
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-cluster-'));
  const undo: Array<() => Promise<unknown>> = [];
  const unwind = async () => {
    for (const step of undo.splice(0).reverse()) await step().catch(() => {});
  };
  undo.push(() => rm(dir, { recursive: true, force: true }));

  try {
    let fresh: FreshDatabase | undefined;
    if (!options.databaseUrl) {
      fresh = await createFreshDatabase(options.baseDatabaseUrl ?? LOCAL_POSTGRES);
      undo.push(fresh.drop);
    }
    const databaseUrl = options.databaseUrl ?? (fresh as FreshDatabase).url;
    const redisUrl = options.redisUrl ?? LOCAL_REDIS;
    const serverEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HOST: '127.0.0.1',
      // 127.x is in no geolocation database: take the agents' --country as given.
      TRUST_DECLARED_LOCATION: 'true',
      // Every run signs its accounts up from this machine's address: the per-address
      // sign-up limit (default 5 an hour) would otherwise stop the third run in an hour.
      SIGNUP_LIMIT_PER_HOUR: '1000',
      // One process per instance: the balancer's servers are the topology's instances, and
      // a test that kills one kills all of it (WORKERS would otherwise default to a process
      // per core once DATABASE_URL and REDIS_URL are set).
      WORKERS: '1',
      // On SIGTERM, /readyz answers 503 `draining` for 3 s while the instance still
      // serves: HAProxy's checks (every 1 s, out after 2 failures) take it out before its
      // ports close, so no connection it sends meets a closed port.
      SHUTDOWN_DELAY_MS: '3000',
      // The balancer's PROXY header gives the proxy and SOCKS5 ports each customer's
      // address (per-address limits, password-less ranges); believed from it alone.
      PROXY_PROTOCOL_FROM: `${topology.loadBalancer.localIp}/32`,
      // And the API's X-Forwarded-For, which the balancer sets.
      TRUST_PROXY: `${topology.loadBalancer.localIp}/32`,
      ...options.env,
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
    };

    const free = options.ports === 'free';
    const instances: Instance[] = [];
    for (const spec of topology.instances) {
      const ports = free
        ? {
            api: await freePort(),
            proxy: await freePort(),
            socks: await freePort(),
            hub: await freePort(),
          }
        : spec.ports;
      instances.push(createInstance({ name: spec.name, ports, env: serverEnv, dir }));
    }
    undo.push(() => Promise.all(instances.map((instance) => instance.stop())));
    // Together, as an orchestrator starts them: migrations run once, under a lock.
    await Promise.all(instances.map((instance) => instance.start()));

    const lbPorts = {} as Record<FrontendRole, number>;
    for (const frontend of topology.loadBalancer.frontends) {
      lbPorts[frontend.role] = free ? await freePort() : frontend.port;
    }
    const loadBalancer = await startLoadBalancer({
      topology,
      ports: lbPorts,
      instancePorts: Object.fromEntries(instances.map((i) => [i.name, i.ports])),
      dir,
    });
    undo.push(() => loadBalancer.stop());
    await loadBalancer.waitFor(allUp, 30_000, 'every instance to pass its health checks');

    const apiBase = `http://127.0.0.1:${lbPorts.api}`;
    const operator = await createOperator(apiBase);
    const customer = await createCustomer(apiBase);
    const target = await startTarget();
    undo.push(() => target.close());

    const instance = (name: string) => {
      const found = instances.find((candidate) => candidate.name === name);
      if (!found) throw new Error(`no instance ${name}`);
      return found;
    };
    const agents: Agent[] = [];
    for (const spec of topology.agents) {
      const node = await operator.registerNode(`${spec.name} ${spec.country} ${spec.exitIp}`);
      agents.push(
        createAgent({
          spec,
          node,
          hubPorts: hubsOf(spec, topology.instances, (i) => instance(i.name).ports.hub),
          allowTargets: options.allowTargets ?? ['127.0.0.0/8'],
          env: { PATH: process.env.PATH, HOME: process.env.HOME },
          dir,
        }),
      );
    }
    // First to stop: SIGTERM drains, so no exit is cut while the servers still run.
    undo.push(() => Promise.all(agents.map((agent) => agent.stop('SIGTERM'))));
    for (const agent of agents) agent.start();

    const { key } = customer;
    const cluster: Cluster = {
      dir,
      databaseUrl,
      redisUrl,
      instances,
      agents,
      loadBalancer,
      operator,
      customer,
      target,
      instance,
      agent(name) {
        const found = agents.find((candidate) => candidate.spec.name === name);
        if (!found) throw new Error(`no agent ${name}`);
        return found;
      },
      proxyUrl: (params = '', via = lbPorts) =>
        `http://${key.id}${params}:${key.secret}@127.0.0.1:${via.proxy}`,
      api: (pathname, init = {}) =>
        fetch(`${apiBase}${pathname}`, {
          ...init,
          headers: { authorization: `Bearer ${key.id}.${key.secret}`, ...(init.headers ?? {}) },
        }),
      holderOf(agentName) {
        const { nodeId } = cluster.agent(agentName);
        return instances.find((candidate) => candidate.running && candidate.hasNode(nodeId));
      },
      async agentsUp(timeoutMs = NODE_UP_MS) {
        // Polled: an agent lands on whichever of its hubs answers (its home one first).
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const away = agents
            .filter((agent) => agent.running && !cluster.holderOf(agent.spec.name))
            .map((agent) => agent.spec.name);
          if (away.length === 0) return;
          if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${away.join(', ')}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      },
      banner: () => banner(cluster, topology),
      stop: unwind,
    };
    await cluster.agentsUp();
    return cluster;
  } catch (error) {
    await unwind();
    throw error;
  }
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
