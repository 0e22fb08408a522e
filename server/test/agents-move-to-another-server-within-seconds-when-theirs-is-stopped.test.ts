/**
 * Losing an instance: two servers share one PostgreSQL database and one Redis, both
 * serving TLS with a certificate from a private CA. An agent given both hub addresses
 * attaches to the first; SIGTERM on that server (it drains: GOAWAY to every node) moves the
 * agent to the second within seconds, where it carries traffic. A customer of the second
 * server, whose sticky session uses that exit through the first, loses no request
 * while the first drains and the agent moves.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type AgentProcess, spawnAgent } from '@ipcola/agent/testing';
import { ProxyAgent, request } from 'undici';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type HttpsApi, signedInOverHttps } from './support/https-api.ts';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';
import { certificateFolder, needsOpenssl } from './support/test-certificates.ts';

/** What "within seconds" means here: the move itself takes well under one (see the log). */
const MOVE_WITHIN_MS = 5_000;

const skip = needs('DATABASE_URL', 'REDIS_URL') || (await needsOpenssl());

describe('an agent moves to another server when its server stops', { skip }, () => {
  let folder: Awaited<ReturnType<typeof certificateFolder>>;
  let caPem: string;
  let caFile: string;
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  let a: ServerProcess;
  let b: ServerProcess;
  let api: HttpsApi;
  let agent: AgentProcess;
  let target: Server;
  let env: NodeJS.ProcessEnv;
  let nodeId: string;

  before(async () => {
    folder = await certificateFolder();
    const ca = await folder.createCa('cluster');
    caPem = ca.pem;
    caFile = ca.certFile;
    const leaf = await ca.issue('hub', { dns: ['localhost'], ips: ['127.0.0.1'] });
    scratch = await createScratchDatabase(required('DATABASE_URL'));
    env = serverEnv({
      DATABASE_URL: scratch.url,
      REDIS_URL: required('REDIS_URL'),
      TLS_CERT_FILE: leaf.certFile,
      TLS_KEY_FILE: leaf.keyFile,
      // With DATABASE_URL set, declared locations are not trusted by default.
      TRUST_DECLARED_LOCATION: 'true',
    });
    // One after the other: both would run the migrations at once.
    a = await startServer(env, [], 60_000);
    b = await startServer(env, [], 60_000);
    target = createHttpServer((req, res) => res.end(req.socket.remoteAddress));
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    api = await signedInOverHttps(`https://127.0.0.1:${a.ports.api}`, caPem);
  });

  after(async () => {
    await agent?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
    await api?.close();
    if (target) await new Promise((resolve) => target.close(resolve));
    await scratch?.drop();
    await folder?.dispose();
  });

  const portsOf = (server: ServerProcess) =>
    server.ports as { api: number; hub: number; proxy: number };
  const hubOf = (server: ServerProcess) => portsOf(server).hub;
  const onlineOn = async (server: ServerProcess, nodeId: string) => {
    const answer = await api('/v1/nodes', { origin: `https://127.0.0.1:${server.ports.api}` });
    const { items } = (await answer.json()) as { items: Array<{ id: string; online: boolean }> };
    return items.find((node) => node.id === nodeId)?.online === true;
  };
  /** Whether the node's agent is attached to this server's hub now (its last word on it is "up"). */
  const heldBy = (server: ServerProcess, nodeId: string) =>
    server.logs.findLast(
      (line) => (line.msg === 'node up' || line.msg === 'node down') && line.nodeId === nodeId,
    )?.msg === 'node up';

  test('SIGTERM on its server moves the agent to the other one, where it carries traffic', async () => {
    const node = (await (await api('/v1/nodes', { method: 'POST', body: {} })).json()) as {
      id: string;
      token: string;
    };
    nodeId = node.id;
    agent = spawnAgent(
      [
        '--hub',
        `127.0.0.1:${hubOf(a)},127.0.0.1:${hubOf(b)}`,
        '--ca',
        caFile,
        '--exit-ip',
        '127.0.0.41',
        '--country',
        'de',
        '--allow-target',
        '127.0.0.1/32',
      ],
      { IPCOLA_NODE_TOKEN: node.token },
    );
    await eventually(() => heldBy(a, node.id), 30_000, 'the node attached to server A');
    assert.equal(heldBy(b, node.id), false, 'server B does not hold it');
    // B leases it all the same, over the hop to A.
    await eventually(() => onlineOn(b, node.id), 10_000, "the node online in B's API");

    const key = (await (await api('/v1/keys', { method: 'POST', body: {} })).json()) as {
      id: string;
      secret: string;
    };
    const { port: targetPort } = target.address() as AddressInfo;
    const sticky = new ProxyAgent(
      `http://${key.id}-country-de-session-roll1:${key.secret}@127.0.0.1:${portsOf(b).proxy}`,
    );
    const answers: string[] = [];
    const ask = async () => {
      try {
        const response = await request(`http://127.0.0.1:${targetPort}/`, {
          dispatcher: sticky,
          headers: { connection: 'close' },
        });
        answers.push(
          response.statusCode === 200 ? await response.body.text() : `HTTP ${response.statusCode}`,
        );
      } catch (error) {
        answers.push(String(error));
      }
    };
    await ask();
    assert.deepEqual(answers, ['127.0.0.41'], 'through B, over the hop to A');

    const stopped = performance.now();
    const exited = a.stop('SIGTERM');
    // Four customers' requests one after the other, through the drain and the move (bounded).
    let done = false;
    void exited.then(() => {
      done = true;
    });
    const asker = async () => {
      for (let i = 0; i < 500 && !(done && heldBy(b, node.id)); i++) await ask();
    };
    await Promise.all([asker(), asker(), asker(), asker()]);
    await eventually(() => onlineOn(b, node.id), MOVE_WITHIN_MS, 'the node online on server B');
    const movedMs = Math.round(performance.now() - stopped);
    assert.equal(await exited, 0, 'server A drained and exited cleanly');
    assert.ok(heldBy(b, node.id), 'the agent is attached to server B');
    await ask();
    await sticky.close();
    const failed = answers.filter((answer) => answer !== '127.0.0.41');
    assert.deepEqual(failed, [], `${answers.length} requests, none lost, one exit all along`);

    const connected = agent.logs.filter((line) => line.msg === 'connected to the hub');
    assert.deepEqual(
      connected.map((line) => line.hub),
      [`127.0.0.1:${hubOf(a)}`, `127.0.0.1:${hubOf(b)}`],
    );
    const lost = agent.logs.find(
      (line) => line.msg === 'lost the hub; dialling the next hub address',
    );
    assert.equal(lost?.hub, `127.0.0.1:${hubOf(a)}`);

    // Server A is gone: the session, kept in the shared database, works on B.
    const origin = `https://127.0.0.1:${b.ports.api}`;
    const fresh = (await (await api('/v1/keys', { method: 'POST', body: {}, origin })).json()) as {
      id: string;
      secret: string;
    };
    const proxy = new ProxyAgent(
      `http://${fresh.id}-country-de:${fresh.secret}@127.0.0.1:${portsOf(b).proxy}`,
    );
    try {
      const { port } = target.address() as AddressInfo;
      const response = await request(`http://127.0.0.1:${port}/`, { dispatcher: proxy });
      assert.equal(await response.body.text(), '127.0.0.41');
    } finally {
      await proxy.close();
    }
    const agentMs = Date.parse(String(connected[1]?.time)) - Date.parse(String(lost?.time));
    console.log(
      `moved from server A to server B: ${agentMs} ms from the GOAWAY to attached (agent's log), ` +
        `${movedMs} ms from SIGTERM to online in B's API; ${answers.length} requests through B, none lost`,
    );
  });

  test('kill -9 of that one moves it back to the first, restarted on its ports', async () => {
    const { api: apiPort, hub, proxy } = portsOf(a);
    a = await startServer(
      {
        ...env,
        API_PORT: String(apiPort),
        HUB_PORT: String(hub),
        PROXY_PORT: String(proxy),
        SOCKS_PORT: '0',
      },
      [],
      60_000,
    );
    const killed = performance.now();
    await b.stop('SIGKILL');
    await eventually(() => heldBy(a, nodeId), MOVE_WITHIN_MS, 'the node attached to server A');
    const movedMs = Math.round(performance.now() - killed);
    const connected = agent.logs.filter((line) => line.msg === 'connected to the hub');
    assert.equal(connected.at(-1)?.hub, `127.0.0.1:${hub}`);
    // It had just moved at once, so this time it waited a short, jittered delay first.
    const retry = agent.logs.findLast((line) => line.msg === 'hub connection failed; retrying');
    assert.ok(Number(retry?.delayMs) > 0);
    console.log(`moved back to server A ${movedMs} ms after kill -9 of server B`);
  });
});
