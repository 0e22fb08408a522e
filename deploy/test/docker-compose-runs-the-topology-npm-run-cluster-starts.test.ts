/**
 * There is no Docker engine here, so the compose file is held to the one description of
 * the topology that `npm run cluster` starts and tests: the same services, instances,
 * agents (countries, exit addresses, hubs), balancer ports and health checks; and the
 * Dockerfile's runtime stage runs the node process itself, unprivileged, as do the
 * example systemd units.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { EXIT_REPLACED } from '../../agent/src/cli-options.ts';
import { composeHaproxyConfig } from '../cluster/index.ts';
import { CONTAINER_PORTS, hubsOf, topology } from '../topology.ts';

const ROOT = new URL('../../', import.meta.url);
const read = (file: string) => readFile(new URL(file, ROOT), 'utf8');

interface Service {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  ports?: string[];
  volumes?: string[];
  networks?: string[] | Record<string, { ipv4_address?: string }>;
  profiles?: string[];
}

const compose = parse(await read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>;
  networks: Record<string, { ipam: { config: Array<{ subnet: string }> } }>;
};
const services = compose.services;
const service = (name: string): Service => {
  const found = services[name];
  assert.ok(found, `docker-compose.yml has a service ${name}`);
  return found;
};
/** Whether an IPv4 address is in a CIDR block. */
const inSubnet = (address: string, cidr: string) => {
  const [base = '', bits = '32'] = cidr.split('/');
  const number = (text: string) =>
    text.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(number(address) / size) === Math.floor(number(base) / size);
};
const optionAfter = (command: string[] | undefined, option: string) =>
  command?.[command.indexOf(option) + 1];

describe('docker-compose.yml runs the topology npm run cluster starts', () => {
  test('it has exactly the services the topology names', () => {
    assert.deepEqual(
      Object.keys(services).sort(),
      [
        topology.database.service,
        topology.redis.service,
        topology.loadBalancer.name,
        ...topology.instances.map((instance) => instance.name),
        ...topology.agents.map((agent) => agent.name),
      ].sort(),
    );
  });

  test('every instance runs the image on the same PostgreSQL and Redis, checked by /readyz', () => {
    assert.equal(topology.instances.length, 2);
    const urls = new Set<string>();
    for (const instance of topology.instances) {
      const server = service(instance.name);
      assert.equal(server.image, 'ipcola:local');
      assert.equal(server.command, undefined, 'the image runs the server by default');
      const env = server.environment ?? {};
      assert.match(env.DATABASE_URL ?? '', new RegExp(`@${topology.database.service}:5432/`));
      assert.equal(env.REDIS_URL, `redis://${topology.redis.service}:6379`);
      assert.equal(env.HOST, '0.0.0.0');
      // The balancer's PROXY header is believed from the balancer's own address only.
      assert.equal(env.PROXY_PROTOCOL_FROM, `${topology.loadBalancer.containerIp}/32`);
      assert.equal(env.TRUST_PROXY, `${topology.loadBalancer.containerIp}/32`);
      urls.add(`${env.DATABASE_URL} ${env.REDIS_URL}`);
      const check = server.healthcheck?.test.join(' ') ?? '';
      assert.ok(check.includes(`http://127.0.0.1:${CONTAINER_PORTS.api}/readyz`), check);
      // Exit nodes outside dial each instance's hub where the topology puts it.
      assert.deepEqual(server.ports, [`${instance.ports.hub}:${CONTAINER_PORTS.hub}`]);
    }
    assert.equal(urls.size, 1, 'both instances share one database and one Redis');
  });

  test('PostgreSQL and Redis are health-checked', () => {
    assert.deepEqual(service(topology.database.service).healthcheck?.test.slice(0, 2), [
      'CMD',
      'pg_isready',
    ]);
    assert.deepEqual(service(topology.redis.service).healthcheck?.test, [
      'CMD',
      'redis-cli',
      'ping',
    ]);
  });

  test('the agents are in the same countries, at their own addresses, on the same hubs', () => {
    const subnet = compose.networks[topology.network.name]?.ipam.config[0]?.subnet;
    assert.equal(subnet, topology.network.subnet, 'the compose network is the topology’s');
    assert.deepEqual([...new Set(topology.agents.map((agent) => agent.country))].sort(), [
      'de',
      'us',
    ]);
    for (const agent of topology.agents) {
      const container = service(agent.name);
      assert.equal(container.image, 'ipcola:local');
      assert.deepEqual(container.command?.slice(0, 4), [
        'node',
        '--import',
        'tsx',
        'agent/src/main.ts',
      ]);
      assert.equal(optionAfter(container.command, '--country'), agent.country);
      assert.equal(optionAfter(container.command, '--exit-ip'), agent.containerIp);
      // Both hubs, its home instance's first: it moves to the other when its own is gone.
      assert.equal(
        optionAfter(container.command, '--hub'),
        hubsOf(agent, topology.instances, (i) => `${i.name}:${CONTAINER_PORTS.hub}`).join(','),
      );
      assert.equal(optionAfter(container.command, '--hub')?.split(',').length, 2);
      const networks = container.networks as Record<string, { ipv4_address?: string }>;
      assert.equal(networks[topology.network.name]?.ipv4_address, agent.containerIp);
      assert.ok(inSubnet(agent.containerIp, topology.network.subnet), agent.containerIp);
      // The cluster's exit IP ends like the container's: the same exit, on loopback.
      assert.equal(agent.exitIp.split('.').at(-1), agent.containerIp.split('.').at(-1));
      // The token is never written down here, only passed in.
      assert.match(container.environment?.IPCOLA_NODE_TOKEN ?? '', /^\$\{[A-Z0-9_]+:-\}$/);
    }
  });

  test('the balancer publishes the topology’s ports with deploy/haproxy.cfg as generated', async () => {
    const balancer = service(topology.loadBalancer.name);
    const networks = balancer.networks as Record<string, { ipv4_address?: string }>;
    assert.equal(
      networks[topology.network.name]?.ipv4_address,
      topology.loadBalancer.containerIp,
      'the address the servers believe PROXY headers from',
    );
    assert.ok(inSubnet(topology.loadBalancer.containerIp, topology.network.subnet));
    assert.deepEqual(
      balancer.ports,
      topology.loadBalancer.frontends.map((frontend) => `${frontend.port}:${frontend.port}`),
    );
    assert.ok(
      balancer.volumes?.some((volume) => volume.startsWith('./deploy/haproxy.cfg:')),
      'deploy/haproxy.cfg is mounted',
    );
    const config = await read('deploy/haproxy.cfg');
    assert.equal(
      config,
      composeHaproxyConfig(topology),
      'deploy/haproxy.cfg is stale: node --import tsx deploy/write-haproxy-cfg.ts',
    );
    // What the generator makes of the health checks, spelled out.
    assert.match(config, /backend api\n(.*\n)*?\s+http-check send meth GET uri \/readyz\n/);
    // Every backend checks /readyz on the API's port, the proxy ports' too (`check port`).
    assert.equal(config.match(/ check$/gm)?.length, topology.instances.length);
    assert.equal(
      config.match(/ check port 8080 send-proxy-v2$/gm)?.length,
      2 * topology.instances.length,
    );
    assert.equal(config.match(/http-check expect status 200$/gm)?.length, 3);
    assert.match(config, /^\s+mode tcp$/m);
    // HAProxy itself accepts it (the service names resolve only inside compose).
    await promisify(execFile)('haproxy', [
      '-c',
      '-q',
      '-f',
      new URL('deploy/haproxy.cfg', ROOT).pathname,
    ]);
  });
});

describe('the Dockerfile', () => {
  /** Its stages, each with its instructions (continuation lines joined, comments dropped). */
  const stages = (text: string) => {
    const instructions = text
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    const found: Array<{ from: string; lines: string[] }> = [];
    for (const line of instructions) {
      if (/^FROM /i.test(line)) found.push({ from: line, lines: [] });
      else found.at(-1)?.lines.push(line);
    }
    return found;
  };

  test('builds with npm ci in one stage and runs node itself, unprivileged, in another', async () => {
    const all = stages(await read('Dockerfile'));
    assert.ok(all.length >= 2, 'multi-stage');
    assert.ok(all[0]?.lines.some((line) => /^RUN npm ci\b/.test(line)));
    const runtime = all.at(-1);
    assert.ok(runtime);
    assert.match(runtime.from, / AS runtime$/i);
    const last = (instruction: string) =>
      runtime.lines.filter((line) => line.startsWith(`${instruction} `)).at(-1) ?? '';
    const user = last('USER').slice('USER '.length);
    assert.ok(user !== '' && !['root', '0', '0:0'].includes(user), `runs as ${user || 'root'}`);
    const entrypoint = JSON.parse(last('ENTRYPOINT').slice('ENTRYPOINT '.length)) as string[];
    const command = JSON.parse(last('CMD').slice('CMD '.length)) as string[];
    // tini is PID 1 and passes SIGTERM to node, the server itself, never to npm.
    assert.deepEqual(entrypoint, ['/usr/bin/tini', '--']);
    assert.equal(command[0], 'node');
    assert.ok(!command.includes('npm') && !entrypoint.includes('npm'));
    // The bundle `npm start` runs, built in the build stage.
    assert.equal(command.at(-1), 'server/dist/main.js');
    assert.ok(!command.includes('tsx'));
    assert.ok(
      all[0]?.lines.some((line) => /\bnpm run build --workspace @ipcola\/server\b/.test(line)),
    );
    assert.ok(runtime.lines.some((line) => /^ENV .*\bHOST=0\.0\.0\.0\b/.test(line)));
    assert.ok(
      !runtime.lines.some((line) => /^RUN npm\b/.test(line)),
      'no npm in the runtime stage',
    );
  });
});

describe('the systemd units', () => {
  /** `Key=value` lines of a unit file (comments dropped), later ones after earlier ones. */
  const settings = async (file: string) =>
    (await read(file))
      .split('\n')
      .filter((line) => /^[A-Za-z]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]);
  const value = (all: string[][], key: string) => all.filter(([name]) => name === key).at(-1)?.[1];

  for (const [file, main] of [
    ['deploy/systemd/ipcola-server.service', 'server/dist/main.js'],
    ['deploy/systemd/ipcola-agent.service', 'agent/src/main.ts'],
  ] as const) {
    test(`${file} runs node itself, unprivileged and confined`, async () => {
      const unit = await settings(file);
      const exec = (value(unit, 'ExecStart') ?? '').split(' ');
      assert.match(exec[0] ?? '', /\/node$/);
      assert.ok(exec.includes(main) && !exec.some((word) => /\bnpm$/.test(word)), exec.join(' '));
      assert.ok(!['', 'root', undefined].includes(value(unit, 'User')));
      for (const hardening of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp']) {
        assert.equal(value(unit, hardening), 'yes', hardening);
      }
      assert.equal(value(unit, 'ProtectSystem'), 'strict');
      assert.equal(value(unit, 'KillSignal'), 'SIGTERM');
    });
  }

  test('a replaced agent (exit status 3) is not started again', async () => {
    const unit = await settings('deploy/systemd/ipcola-agent.service');
    assert.ok(value(unit, 'RestartPreventExitStatus')?.split(' ').includes(String(EXIT_REPLACED)));
  });
});
