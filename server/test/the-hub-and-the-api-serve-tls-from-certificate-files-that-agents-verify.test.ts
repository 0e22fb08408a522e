/**
 * TLS_CERT_FILE and TLS_KEY_FILE: the API answers over https and the hub over TLS with a
 * certificate from a private CA made here by openssl. An agent given that CA (--ca)
 * attaches and carries customers' traffic through the (plain) proxy port; an agent given
 * another CA does not attach, says why and keeps retrying; an agent given a dead hub first
 * attaches through the next one. Bad files stop the start-up with one line naming the
 * variable.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, get as httpGet, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { type AgentProcess, spawnAgent } from '@ipcola/agent/testing';
import { type Agent, ProxyAgent, request } from 'undici';
import { eventually } from './support/engines.ts';
import { type HttpsApi, signedInOverHttps } from './support/https-api.ts';
import { proxyLineFor, startProxyHeaderRelay } from './support/proxy-header-relay.ts';
import {
  type ServerProcess,
  serverEnv,
  spawnServer,
  startServer,
} from './support/server-process.ts';
import {
  certificateFolder,
  type Issued,
  needsOpenssl,
  type TestCa,
} from './support/test-certificates.ts';

const skip = await needsOpenssl();
/** A TCP balancer in front of the hub, passing TLS through after its PROXY header. */
const BALANCER = '127.0.0.50';

/** A port that nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const probe = createTcpServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('the hub and the API serve TLS from certificate files', { skip }, () => {
  let folder: Awaited<ReturnType<typeof certificateFolder>>;
  let ca: TestCa;
  let otherCa: TestCa;
  let leaf: Issued;
  let dataDir: string;
  let server: ServerProcess;
  let ports: { api: number; proxy: number; hub: number };
  let trusting: Agent;
  let target: Server;
  let api: HttpsApi;
  let proxyKey: { id: string; secret: string };
  const agents: AgentProcess[] = [];

  before(async () => {
    folder = await certificateFolder();
    ca = await folder.createCa('ipcola');
    otherCa = await folder.createCa('stranger');
    leaf = await ca.issue('hub', { dns: ['localhost'], ips: ['127.0.0.1'] });
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-tls-'));
    server = await startServer(
      serverEnv({
        DATA_DIR: dataDir,
        TLS_CERT_FILE: leaf.certFile,
        TLS_KEY_FILE: leaf.keyFile,
        HUB_PROXY_PROTOCOL_FROM: `${BALANCER}/32`,
      }),
      [],
      60_000,
    );
    ports = server.ports as typeof ports;
    target = createHttpServer((req, res) => res.end(req.socket.remoteAddress));
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    // Signed in over https, trusting only the private CA.
    api = await signedInOverHttps(`https://127.0.0.1:${ports.api}`, ca.pem);
    trusting = api.dispatcher;
    proxyKey = (await (await api('/v1/keys', { method: 'POST', body: {} })).json()) as {
      id: string;
      secret: string;
    };
  });

  after(async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
    await server?.stop();
    await api?.close();
    if (target) await new Promise((resolve) => target.close(resolve));
    await folder?.dispose();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** Registers a node and starts its agent with these hub options. */
  async function startNode(exitIp: string, hubArgs: string[]) {
    const node = (await (await api('/v1/nodes', { method: 'POST', body: {} })).json()) as {
      id: string;
      token: string;
      agent_command: string;
    };
    const agent = spawnAgent(
      [
        ...hubArgs,
        '--exit-ip',
        exitIp,
        '--country',
        'de',
        '--allow-target',
        '127.0.0.1/32',
        '--log-level',
        'debug',
      ],
      { IPCOLA_NODE_TOKEN: node.token },
    );
    agents.push(agent);
    return { nodeId: node.id, agent, command: node.agent_command };
  }

  const nodeUp = (nodeId: string) =>
    eventually(
      () => server.logs.some((line) => line.msg === 'node up' && line.nodeId === nodeId),
      30_000,
      `node ${nodeId} up`,
    );

  test('the API answers over https with the certificate, and not in plain http', async () => {
    const response = await request(`https://127.0.0.1:${ports.api}/healthz`, {
      dispatcher: trusting,
    });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
    // By name too: the certificate carries localhost.
    const byName = await request(`https://localhost:${ports.api}/healthz`, {
      dispatcher: trusting,
    });
    assert.equal(byName.statusCode, 200);
    await byName.body.dump();
    // A client that does not know the CA refuses the certificate.
    await assert.rejects(request(`https://127.0.0.1:${ports.api}/healthz`), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    const up = server.logs.find((line) => line.ports);
    assert.match(String(up?.msg), new RegExp(`API https://127\\.0\\.0\\.1:${ports.api}`));
    const plain = await new Promise<string>((resolve) => {
      const req = httpGet(`http://127.0.0.1:${ports.api}/healthz`, (res) =>
        resolve(`answered ${res.statusCode}`),
      );
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    assert.doesNotMatch(plain, /answered 200/);
  });

  test('an agent with --ca attaches over TLS and carries traffic through the plain proxy port', async () => {
    const { nodeId, agent, command } = await startNode('127.0.0.31', [
      '--hub',
      `localhost:${ports.hub}`,
      '--ca',
      ca.certFile,
    ]);
    await nodeUp(nodeId);
    await agent.waitForLog((line) => line.msg === 'connected to the hub', 'connected');
    const proxy = new ProxyAgent(
      `http://${proxyKey.id}-country-de:${proxyKey.secret}@127.0.0.1:${ports.proxy}`,
    );
    try {
      const { port } = target.address() as AddressInfo;
      const response = await request(`http://127.0.0.1:${port}/`, { dispatcher: proxy });
      assert.equal(response.statusCode, 200);
      assert.equal(await response.body.text(), '127.0.0.31');
    } finally {
      await proxy.close();
    }
    // The API's agent command says --tls for this hub.
    assert.match(command, new RegExp(`--hub 127\\.0\\.0\\.1:${ports.hub} --tls --token `));
    const { items } = (await (await api('/v1/nodes')).json()) as {
      items: Array<{ id: string; online: boolean }>;
    };
    assert.equal(items.find((node) => node.id === nodeId)?.online, true);
  });

  test('behind a balancer sending the PROXY protocol, the TLS hub sees the agent', async () => {
    const balancer = await startProxyHeaderRelay({
      port: ports.hub,
      from: BALANCER,
      header: (client) => proxyLineFor(client, ports.hub),
    });
    try {
      const { nodeId } = await startNode('127.0.0.34', [
        '--hub',
        `localhost:${balancer.port}`,
        '--ca',
        ca.certFile,
      ]);
      await nodeUp(nodeId);
      const up = server.logs.find((line) => line.msg === 'node up' && line.nodeId === nodeId);
      assert.equal(up?.remoteAddress, '127.0.0.1', 'the agent, not the balancer');
      // Its exit-IP proof went through the balancer too, and was seen from the exit.
      const { items } = (await (await api('/v1/nodes')).json()) as {
        items: Array<{ id: string; exits: Array<{ ip: string; state: string }> }>;
      };
      const exits = items.find((node) => node.id === nodeId)?.exits;
      assert.deepEqual(
        exits?.map(({ ip, state }) => ({ ip, state })),
        [{ ip: '127.0.0.34', state: 'verified' }],
      );
    } finally {
      balancer.server.close();
    }
  });

  test('an agent with another CA does not attach, says why, and keeps retrying', async () => {
    const { nodeId, agent } = await startNode('127.0.0.32', [
      '--hub',
      `127.0.0.1:${ports.hub}`,
      '--ca',
      otherCa.certFile,
    ]);
    const why = await agent.waitForLog(
      (line) => /certificate is not trusted.*--ca/.test(line.msg),
      'the refusal of the certificate',
    );
    assert.equal(why.level, 50);
    await agent.waitForLog(
      (line) => line.msg === 'hub connection failed; retrying' && Number(line.attempt) >= 2,
      'a second round',
    );
    assert.equal(agent.child.exitCode, null, 'still running');
    assert.ok(!agent.logs.some((line) => line.msg === 'connected to the hub'));
    assert.ok(!server.logs.some((line) => line.msg === 'node up' && line.nodeId === nodeId));
  });

  test('an agent dialling a name the certificate does not carry does not attach, and says why', async () => {
    // The same hub through its IPv4-mapped IPv6 address, which the certificate does not name.
    const { agent } = await startNode('127.0.0.34', [
      '--hub',
      `[::ffff:127.0.0.1]:${ports.hub}`,
      '--ca',
      ca.certFile,
    ]);
    const why = await agent.waitForLog(
      (line) => /certificate is not for the name dialled/.test(line.msg),
      'the refusal of the name',
    );
    assert.equal((why.err as { code?: string } | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    await agent.waitForLog(
      (line) => line.msg === 'hub connection failed; retrying' && Number(line.attempt) >= 2,
      'a second round',
    );
    assert.ok(!agent.logs.some((line) => line.msg === 'connected to the hub'));
  });

  test('an agent dialling the TLS hub in plain text is told to add --tls or --ca', async () => {
    const { agent } = await startNode('127.0.0.35', ['--hub', `127.0.0.1:${ports.hub}`]);
    await agent.waitForLog(
      (line) => /if it serves TLS, dial it with --tls or --ca/.test(line.msg),
      'the hint',
    );
    assert.ok(!agent.logs.some((line) => line.msg === 'connected to the hub'));
  });

  test('an agent given a dead hub first attaches through the next one', async () => {
    const dead = await closedPort();
    const { nodeId, agent } = await startNode('127.0.0.33', [
      '--hub',
      `127.0.0.1:${dead},127.0.0.1:${ports.hub}`,
      '--ca',
      ca.certFile,
    ]);
    await nodeUp(nodeId);
    const connected = await agent.waitForLog(
      (line) => line.msg === 'connected to the hub',
      'connected',
    );
    assert.equal(connected.hub, `127.0.0.1:${ports.hub}`);
    assert.ok(
      agent.logs.some(
        (line) => line.msg.startsWith('could not attach') && line.hub === `127.0.0.1:${dead}`,
      ),
    );
    // No back-off between the two: the second address is dialled right after the first.
    assert.ok(!agent.logs.some((line) => line.msg === 'hub connection failed; retrying'));
    const dialled = agent.logs.find((line) => line.msg === 'dialling the hub');
    const ms = Date.parse(String(connected.time)) - Date.parse(String(dialled?.time));
    console.log(`a dead hub first: attached through the second ${ms} ms after the first dial`);
  });

  test('renewed files are served without a restart; a key that does not match yet is not', async () => {
    const served = async (port: number) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.pem });
      try {
        await once(socket, 'secureConnect');
        return socket.getPeerCertificate().serialNumber;
      } finally {
        socket.destroy();
      }
    };
    const before = await served(ports.api);
    const renewed = await ca.issue('hub-renewed', { dns: ['localhost'], ips: ['127.0.0.1'] });
    const renewedSerial = new X509Certificate(renewed.pem).serialNumber;
    // The certificate first, as a renewal writing one file after the other would.
    await copyFile(renewed.certFile, leaf.certFile);
    await eventually(
      () => server.logs.some((line) => line.msg === 'TLS files not reloaded: kept the old'),
      10_000,
      'the half-renewed pair refused',
    );
    assert.equal(await served(ports.api), before);
    await copyFile(renewed.keyFile, leaf.keyFile);
    await eventually(
      async () => (await served(ports.api)) === renewedSerial,
      10_000,
      'the renewed certificate on the API',
    );
    assert.equal(await served(ports.hub), renewedSerial, 'and on the hub');
    assert.ok(server.logs.some((line) => line.msg === 'TLS certificate reloaded'));
  });
});

describe('start-up stops on bad TLS files with one line naming the variable', { skip }, () => {
  let folder: Awaited<ReturnType<typeof certificateFolder>>;
  let scratch: string;
  const files: Record<string, string> = {};

  before(async () => {
    folder = await certificateFolder();
    const ca = await folder.createCa('startup');
    const one = await ca.issue('one', { ips: ['127.0.0.1'] });
    const two = await ca.issue('two', { ips: ['127.0.0.1'] });
    scratch = await mkdtemp(path.join(tmpdir(), 'ipcola-tls-startup-'));
    const notPem = path.join(scratch, 'not.pem');
    await writeFile(notPem, 'not a certificate\n');
    Object.assign(files, { cert: one.certFile, key: one.keyFile, otherKey: two.keyFile, notPem });
  });
  after(async () => {
    await folder?.dispose();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  const cases: Array<{
    name: string;
    env: () => Record<string, string>;
    args?: string[];
    line: RegExp;
  }> = [
    {
      name: 'a certificate without its key',
      env: () => ({ TLS_CERT_FILE: files.cert as string }),
      line: /TLS_KEY_FILE: is required with TLS_CERT_FILE/,
    },
    {
      name: 'a certificate file that does not exist',
      env: () => ({ TLS_CERT_FILE: '/nonexistent/cert.pem', TLS_KEY_FILE: files.key as string }),
      line: /TLS_CERT_FILE: "\/nonexistent\/cert.pem" cannot be read \(ENOENT\)/,
    },
    {
      name: 'a key that is not the certificate’s',
      env: () => ({ TLS_CERT_FILE: files.cert as string, TLS_KEY_FILE: files.otherKey as string }),
      line: /TLS_KEY_FILE: ".*two\.key" is not the key of the certificate in TLS_CERT_FILE/,
    },
    {
      name: 'a certificate file without a certificate',
      env: () => ({ TLS_CERT_FILE: files.notPem as string, TLS_KEY_FILE: files.key as string }),
      line: /TLS_CERT_FILE: ".*not\.pem" holds no PEM certificate/,
    },
    {
      name: 'the demo (its agents and banner are plain)',
      env: () => ({ TLS_CERT_FILE: files.cert as string, TLS_KEY_FILE: files.key as string }),
      args: ['--demo'],
      line: /TLS_CERT_FILE: the demo runs in plain text/,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: exit 1 and one line`, async () => {
      const spawned = spawnServer(
        serverEnv({ DATA_DIR: path.join(scratch, 'data'), ...c.env() }),
        c.args,
      );
      assert.equal(await spawned.exited, 1);
      const lines = spawned.stderr().trimEnd().split('\n');
      assert.equal(lines.length, 1, spawned.stderr());
      assert.match(lines[0] ?? '', /^ipcola: cannot start: /);
      assert.match(lines[0] ?? '', c.line);
      assert.ok(!spawned.logs.some((line) => line.ports), 'never reported itself up');
    });
  }
});
