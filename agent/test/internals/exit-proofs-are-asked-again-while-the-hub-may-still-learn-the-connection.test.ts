/**
 * The agent proves each exit IP once per connection, so an answer that may change (404
 * from an instance that has not yet heard of the connection, 503, no answer) is asked
 * again a few times; 200 and 409 are final. Against a real HTTP server staging answers.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { EXIT_IP_HEADER, EXIT_PROOF_HEADER, EXIT_PROOF_PATH } from '@ipcola/shared/protocol';
import { proveExits } from '../../src/tunnel/prove-exits.ts';

interface Seen {
  ip: string;
  nonce: string;
  from: string;
}

/** A hub stand-in answering proofs from `answers` in order (the last one repeats). */
async function proofHub(answers: number[]) {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    assert.equal(req.url, EXIT_PROOF_PATH);
    seen.push({
      ip: String(req.headers[EXIT_IP_HEADER]),
      nonce: String(req.headers[EXIT_PROOF_HEADER]),
      from: req.socket.remoteAddress ?? '',
    });
    const status = answers[Math.min(seen.length - 1, answers.length - 1)] as number;
    res.writeHead(status, { Connection: 'close' }).end(`answer ${status}\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, seen, port: (server.address() as AddressInfo).port };
}

function recordingLogger() {
  const lines: Array<{ level: string; details: Record<string, unknown>; message: string }> = [];
  const at =
    (level: string) =>
    (details: object, message: string): void => {
      lines.push({ level, details: details as Record<string, unknown>, message });
    };
  return {
    lines,
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
  };
}

const servers: Array<{ close(): void }> = [];
after(() => {
  for (const server of servers) server.close();
});

/** Proves 127.0.0.1 to a hub on `port`; what the agent logged. */
async function proveTo(
  port: number,
  { signal = new AbortController().signal, retryDelaysMs = [10, 10, 10] } = {},
) {
  const { lines, logger } = recordingLogger();
  await proveExits({
    host: '127.0.0.1',
    port,
    tls: false,
    nonce: 'n0nce',
    exitIps: ['127.0.0.1'],
    timeoutMs: 2_000,
    signal,
    logger,
    retryDelaysMs,
  });
  return lines;
}

/** Proves to a hub answering `answers` in turn: what it saw, and what the agent logged. */
async function prove(answers: number[]) {
  const hub = await proofHub(answers);
  servers.push(hub.server);
  return { seen: hub.seen, lines: await proveTo(hub.port) };
}

describe('exit proofs', () => {
  test('a 404 from an instance that has not heard of the connection yet is asked again until 200', async () => {
    const { seen, lines } = await prove([404, 404, 200]);
    assert.equal(seen.length, 3);
    for (const proof of seen) {
      assert.deepEqual(proof, { ip: '127.0.0.1', nonce: 'n0nce', from: '127.0.0.1' });
    }
    assert.ok(lines.some((l) => l.message === 'exit IP proven' && l.details.attempts === 3));
    assert.ok(!lines.some((l) => l.level === 'warn'));
  });

  test('503 is asked again too', async () => {
    const { seen } = await prove([503, 200]);
    assert.equal(seen.length, 2);
  });

  test('409 is final: one request and one warning', async () => {
    const { seen, lines } = await prove([409, 200]);
    assert.equal(seen.length, 1);
    const warnings = lines.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.details.status, 409);
  });

  test('the attempts are bounded: four 404s end in one warning', async () => {
    const { seen, lines } = await prove([404]);
    assert.equal(seen.length, 4);
    const warnings = lines.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.details.attempts, 4);
  });

  test('a hub that does not answer at all is tried again, then given up', async () => {
    // A port nothing listens on: the connection is refused each time.
    const closed = await proofHub([200]);
    const { port } = closed;
    await new Promise((resolve) => closed.server.close(resolve));
    const lines = await proveTo(port);
    const warnings = lines.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]?.message ?? '', /could not prove/);
  });

  test('a closed connection stops the retries at once', async () => {
    const stop = new AbortController();
    const hub = await proofHub([404]);
    servers.push(hub.server);
    hub.server.once('request', () => stop.abort());
    // Waits long enough that the test would time out if the abort did not end them.
    await proveTo(hub.port, { signal: stop.signal, retryDelaysMs: [60_000, 60_000, 60_000] });
    assert.equal(hub.seen.length, 1);
  });
});
