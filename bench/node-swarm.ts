/**
 * Many simulated exit nodes in one process, for the hub measurement: each is the agent's
 * own tunnel client (`connectToHub` from agent/src/tunnel), so the hub sees exactly what a
 * real agent does: an HTTP Upgrade with the node token and hello, the tunnel protocol
 * over the upgraded socket, its exit IP proven from that address, PINGs. Only the
 * egress is missing: these nodes never carry traffic.
 *
 *   node --import tsx bench/node-swarm.ts --hub 127.0.0.1:PORT --tokens FILE [--parallel 100]
 *
 * FILE holds one node token per line. Node i announces the exit IP 127.1.x.y (Linux
 * answers for all of 127.0.0.0/8), one per node, so that every node's exit is proven and
 * indexed as a real one would be. Prints one JSON line per 500 nodes up and one when all
 * are up (or the deadline passed); SIGTERM closes every tunnel and exits.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connectToHub, type TunnelClient } from '../agent/src/tunnel/index.ts';

const { values } = parseArgs({
  options: {
    hub: { type: 'string' },
    tokens: { type: 'string' },
    parallel: { type: 'string', default: '100' },
    'deadline-ms': { type: 'string', default: '300000' },
  },
});
if (!values.hub || !values.tokens) throw new Error('--hub and --tokens are required');
const hub = values.hub;
const tokens = readFileSync(values.tokens, 'utf8').split('\n').filter(Boolean);
const parallel = Number(values.parallel);
const deadline = Date.now() + Number(values['deadline-ms']);

const clients: TunnelClient[] = [];
let up = 0;
let failed = 0;
let firstError: string | null = null;
const startedAt = performance.now();
const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

/** 127.1.0.1, 127.1.0.2, ... one per node; never .0 or .255. */
function exitIp(index: number): string {
  const host = (index % 254) + 1;
  const block = Math.floor(index / 254);
  return `127.${1 + Math.floor(block / 256)}.${block % 256}.${host}`;
}

/** Starts node `index` and resolves once the hub took it (or it gave up, or time ran out). */
function startNode(index: number): Promise<void> {
  return new Promise((resolve) => {
    const client = connectToHub({
      hub,
      token: tokens[index] as string,
      hello: {
        exitIps: [exitIp(index)],
        type: 'residential',
        maxStreams: 16,
        agentVersion: '0.0.0-swarm',
        country: 'de',
      },
      openEgress: () => Promise.reject(new Error('swarm nodes carry no traffic')),
      idleTimeoutMs: 0,
    });
    clients.push(client);
    const timer = setTimeout(() => finish(new Error('no answer within 60 s')), 60_000);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      client.off('connected', onUp);
      client.off('rejected', onRejected);
      if (error) {
        failed++;
        firstError ??= error.message;
      } else {
        up++;
        if (up % 500 === 0) print({ up, failed });
      }
      resolve();
    };
    const onUp = () => finish();
    const onRejected = (event: { status: number; message: string }) =>
      finish(new Error(`${event.status} ${event.message}`));
    client.once('connected', onUp);
    client.once('rejected', onRejected);
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < tokens.length && Date.now() < deadline) {
    await startNode(next++);
  }
}
await Promise.all(Array.from({ length: Math.min(parallel, tokens.length) }, worker));
print({ done: true, up, failed, firstError, ms: Math.round(performance.now() - startedAt) });

process.on('SIGTERM', () => {
  // Closing 10,000 sessions one by one would outlast the harness's patience.
  process.exit(0);
});
// Keep running (the clients' sockets and timers hold the loop) until SIGTERM.
