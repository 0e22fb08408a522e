/** What `npm run cluster` prints once everything is up, like `npm start -- --demo`. */
import type { Topology } from '../topology.ts';
import type { Cluster } from './index.ts';

export function banner(cluster: Cluster, topology: Topology): string {
  const { key } = cluster.customer;
  const lb = cluster.loadBalancer.ports;
  /** The exits whose agents dial this instance first. */
  const held = (name: string) =>
    topology.agents
      .filter((agent) => agent.instance === name)
      .map((agent) => `${agent.country} ${agent.exitIp}`)
      .join(', ');
  return [
    '',
    `IPCola cluster is ready: ${cluster.instances.length} server instances behind HAProxy, ${cluster.agents.length} exit nodes, and a local target at ${cluster.target.url}`,
    '',
    `  load balancer   API http://127.0.0.1:${lb.api}   HTTP proxy 127.0.0.1:${lb.proxy}   SOCKS5 127.0.0.1:${lb.socks}`,
    ...cluster.instances.map(
      (instance) =>
        `  ${instance.name.padEnd(14)}  API :${instance.ports.api}  proxy :${instance.ports.proxy}  SOCKS5 :${instance.ports.socks}  hub :${instance.ports.hub}  home of: ${held(instance.name)}`,
    ),
    '',
    `  curl -x ${cluster.proxyUrl('-country-us')} ${cluster.target.url}`,
    `  curl --socks5-hostname 127.0.0.1:${lb.socks} -U ${key.id}-country-us:${key.secret} ${cluster.target.url}`,
    `  curl -H 'Authorization: Bearer ${key.id}.${key.secret}' http://127.0.0.1:${lb.api}/v1/usage`,
    '',
    `Every exit answers through either instance (-country-de too); agents dial their home hub first, the other when it is gone.`,
    `The key secret is shown once. Logs and haproxy.cfg: ${cluster.dir}`,
    `Database: ${redact(cluster.databaseUrl)}   Redis: ${redact(cluster.redisUrl)}`,
    'Ctrl-C stops everything.',
    '',
  ].join('\n');
}

/** A URL without its password, for printing. */
function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}
