/**
 * A hub that is N workers behind one port (WORKERS=N: node:cluster hands each connection
 * to the next worker), staged on one node:http server: each Upgrade goes to the next
 * worker in turn, which answers 101 with WORKER_HEADER or, when the agent lists it as
 * held, HELD_WORKER_STATUS. The agent must end up with one tunnel on every worker.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type ClientHttp2Session, connect as http2Connect } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, test } from 'node:test';
import {
  HELD_WORKER_STATUS,
  HELD_WORKERS_HEADER,
  type NodeHello,
  TUNNEL_UPGRADE_TOKEN,
  WORKER_HEADER,
} from '@ipcola/shared/protocol';
import { type ConnectOptions, connectToHub, type TunnelClient } from '../../src/tunnel/index.ts';

const HELLO: NodeHello = {
  exitIps: ['127.0.0.1'],
  type: 'residential',
  maxStreams: 8,
  agentVersion: '0.1.0',
};

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Dial {
  readonly worker: number;
  /** The agent's HELD_WORKERS_HEADER, as sent. */
  readonly held: string | undefined;
  readonly at: number;
  readonly accepted: boolean;
}

interface WorkerHub {
  readonly port: number;
  readonly dials: Dial[];
  /** Live tunnels by worker. */
  readonly tunnels: Map<number, ClientHttp2Session>;
  /** Resolves once the agent holds a tunnel on each of these workers. */
  holding(workers: readonly number[]): Promise<void>;
}

/**
 * `workers` workers taking Upgrades in turn; `next` overrides which worker takes the next
 * one (e.g. always the same, for a host whose other worker never comes up), and
 * `unavailable` lists workers that answer 503 (starting, or shutting down).
 */
async function workerHub(
  workers: number,
  next?: () => number,
  unavailable: ReadonlySet<number> = new Set(),
): Promise<WorkerHub> {
  let turn = 0;
  const dials: Dial[] = [];
  const tunnels = new Map<number, ClientHttp2Session>();
  const waiting = new Set<() => void>();
  const server: Server = createServer();
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => {});
    cleanups.push(() => {
      socket.destroy();
    });
    const worker = next ? next() : (turn++ % workers) + 1;
    const held = req.headers[HELD_WORKERS_HEADER] as string | undefined;
    const refused = (held ?? '').split(',').includes(String(worker));
    dials.push({
      worker,
      held,
      at: performance.now(),
      accepted: !refused && !unavailable.has(worker),
    });
    if (unavailable.has(worker) && !refused) {
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 9\r\n\r\nstarting\n',
      );
      return;
    }
    if (refused) {
      socket.end(
        `HTTP/1.1 ${HELD_WORKER_STATUS} Misdirected Request\r\nConnection: close\r\nContent-Length: 5\r\n\r\nheld\n`,
      );
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_UPGRADE_TOKEN}\r\n` +
        `${WORKER_HEADER}: ${worker}/${workers}\r\n\r\n`,
      () => {
        const session = http2Connect('http://node.invalid', { createConnection: () => socket });
        session.on('error', () => {});
        cleanups.push(() => session.destroy());
        session.once('remoteSettings', () => {
          tunnels.set(worker, session);
          for (const wake of waiting) wake();
        });
        session.once('close', () => {
          if (tunnels.get(worker) === session) tunnels.delete(worker);
        });
      },
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port: (server.address() as AddressInfo).port,
    dials,
    tunnels,
    holding: (wanted) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!wanted.every((worker) => tunnels.has(worker))) return;
          waiting.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiting.delete(check);
          reject(new Error(`tunnels on ${[...tunnels.keys()]}, not on every one of ${wanted}`));
        }, 5_000);
        waiting.add(check);
        check();
      }),
  };
}

/** Resolves once `condition` holds, checked every turn of the event loop; bounded. */
function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  return new Promise<void>((resolve, reject) => {
    const check = () => {
      if (condition()) resolve();
      else if (performance.now() > deadline) reject(new Error('the condition never held'));
      else setImmediate(check);
    };
    check();
  });
}

function startAgent(hub: string | string[], overrides: Partial<ConnectOptions> = {}): TunnelClient {
  const agent = connectToHub({
    hub,
    token: 'node-token',
    hello: HELLO,
    openEgress: () => Promise.reject(new Error('no egress in this test')),
    idleTimeoutMs: 5_000,
    pingIntervalMs: 100,
    pingTimeoutMs: 5_000,
    reconnect: { initialMs: 40, maxMs: 320, stableAfterMs: 60_000, refusedRetryMs: 40 },
    ...overrides,
  });
  cleanups.push(() => agent.close());
  return agent;
}

test('the agent holds one tunnel on every worker of the hub, dialling again when it lands on one it holds', async () => {
  const hub = await workerHub(3);
  const agent = startAgent(`127.0.0.1:${hub.port}`);
  await hub.holding([1, 2, 3]);
  assert.equal(agent.tunnels, 3);
  assert.deepEqual(
    hub.dials.filter((dial) => dial.accepted).map((dial) => [dial.worker, dial.held]),
    [
      [1, undefined],
      [2, '1'],
      [3, '1,2'],
    ],
  );
  assert.equal(hub.dials.length, 3, 'workers taken in turn: no dial lands on a held one');
});

test('a dial that lands on a held worker is refused by it and dialled again until every worker is held', async () => {
  // Workers 1, 1, 1, 2: the two dials that reach worker 1 again are refused.
  const order = [1, 1, 1, 2];
  let dial = 0;
  const hub = await workerHub(2, () => order[dial++] ?? 2);
  const agent = startAgent(`127.0.0.1:${hub.port}`);
  let disconnected = 0;
  agent.on('disconnected', () => {
    disconnected += 1;
  });
  await hub.holding([1, 2]);
  assert.equal(agent.tunnels, 2);
  assert.deepEqual(
    hub.dials.map((d) => [d.worker, d.held, d.accepted]),
    [
      [1, undefined, true],
      [1, '1', false],
      [1, '1', false],
      [2, '1', true],
    ],
  );
  assert.equal(disconnected, 0, 'a refused sibling dial is no lost connection');
});

test('losing the tunnel of one worker dials for that worker only; the others keep serving', async () => {
  const hub = await workerHub(2);
  const agent = startAgent(`127.0.0.1:${hub.port}`);
  await hub.holding([1, 2]);
  const kept = hub.tunnels.get(2) as ClientHttp2Session;
  let disconnected = 0;
  agent.on('disconnected', () => {
    disconnected += 1;
  });
  // Worker 1 drains (GOAWAY): the next dial lands on worker 2 (held: refused), then on 1.
  (hub.tunnels.get(1) as ClientHttp2Session).close();
  await until(() => hub.dials.filter((d) => d.accepted).length === 3);
  await hub.holding([1, 2]);
  assert.equal(hub.tunnels.get(2), kept, "worker 2's tunnel was not touched");
  assert.equal(kept.closed, false);
  assert.equal(disconnected, 0, 'the agent never stopped serving');
  // Workers take dials in turn: the third dial reached worker 1, naming worker 2 as held.
  assert.deepEqual(
    hub.dials.slice(2).map((d) => [d.worker, d.held, d.accepted]),
    [[1, '2', true]],
  );
  assert.equal(agent.tunnels, 2);
});

test('a worker that never comes up is dialled in bounded rounds that wait longer each time, never in a tight loop', async () => {
  // The host says 2 workers but every dial reaches worker 1 (the other is down).
  const hub = await workerHub(2, () => 1);
  const agent = startAgent(`127.0.0.1:${hub.port}`);
  await until(() => hub.dials.length >= 1 + 3 * 6);
  assert.equal(agent.tunnels, 1, 'the tunnel held keeps serving');
  const refused = hub.dials.slice(1);
  assert.ok(refused.every((d) => !d.accepted && d.held === '1'));
  // Rounds of 3 dials per worker (6), each round after the growing delay: 40 ms, then 80,
  // then 160, jittered to [half, full].
  const gaps = [6, 12].map((i) => (refused[i]?.at ?? 0) - (refused[i - 1]?.at ?? 0));
  assert.ok((gaps[0] ?? 0) >= 20 - 1, `first round waited ${gaps[0]} ms`);
  assert.ok((gaps[1] ?? 0) >= 40 - 1, `second round waited ${gaps[1]} ms`);
});

test('a worker that answers 503 ends the round at once: the next dial waits the back-off, the tunnel held serves on', async () => {
  const hub = await workerHub(2, undefined, new Set([2]));
  const agent = startAgent(`127.0.0.1:${hub.port}`);
  let disconnected = 0;
  agent.on('disconnected', () => {
    disconnected += 1;
  });
  await until(() => hub.dials.filter((d) => d.worker === 2).length >= 3);
  const toWorker2 = hub.dials.filter((d) => d.worker === 2);
  // Each failed dial for worker 2 is followed by a back-off (40 ms, then 80, jittered to
  // [half, full]); the dial in between reached worker 1, held, and was refused at once.
  const gaps = [1, 2].map((i) => (toWorker2[i]?.at ?? 0) - (toWorker2[i - 1]?.at ?? 0));
  assert.ok((gaps[0] ?? 0) >= 20 - 1, `first wait ${gaps[0]} ms`);
  assert.ok((gaps[1] ?? 0) >= 40 - 1, `second wait ${gaps[1]} ms`);
  assert.equal(agent.tunnels, 1);
  assert.equal(disconnected, 0);
});

test('a hub that does not say it has workers gets one tunnel, as before', async () => {
  const sessions: ClientHttp2Session[] = [];
  let upgrades = 0;
  const server: Server = createServer();
  server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    upgrades += 1;
    socket.on('error', () => {});
    cleanups.push(() => {
      socket.destroy();
    });
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_UPGRADE_TOKEN}\r\n\r\n`,
      () => {
        const session = http2Connect('http://node.invalid', { createConnection: () => socket });
        session.on('error', () => {});
        cleanups.push(() => session.destroy());
        sessions.push(session);
      },
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const agent = startAgent(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  await once(agent, 'connected');
  // A PING round trip on the tunnel: any dial for a second worker would have been made.
  await once(sessions[0] as ClientHttp2Session, 'remoteSettings');
  await new Promise<void>((resolve) => (sessions[0] as ClientHttp2Session).ping(() => resolve()));
  assert.equal(upgrades, 1);
  assert.equal(agent.tunnels, 1);
});

test('losing the last worker of a hub moves the agent to the next hub address, where it holds every worker again', async () => {
  const first = await workerHub(2);
  const second = await workerHub(2);
  const agent = startAgent([`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`]);
  await first.holding([1, 2]);
  for (const session of first.tunnels.values()) session.close();
  await second.holding([1, 2]);
  assert.equal(agent.tunnels, 2);
  assert.ok(
    second.dials.every((d) => d.held === undefined || d.held === '1'),
    'the workers held on the first hub are not named to the second',
  );
});
