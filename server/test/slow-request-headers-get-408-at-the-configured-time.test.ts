/**
 * PROXY_HANDSHAKE_TIMEOUT_MS bounds the time from accept until a proxy request's headers are
 * complete: a client that sends nothing, one that stops half-way, and a slowloris that
 * trickles one header byte a second are all answered `408 request_timeout` and closed at the
 * configured time (bytes trickling in do not extend it), and the SOCKS5 handshake is closed at
 * the same time. The metrics count them as request_timeout, never as bad_params.
 *
 * Node only checks its headers timeout every connectionsCheckingInterval (30 s by default):
 * a 10 s timeout used to fire after 24-40 s, answered as a 400 bad_params.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

const TIMEOUT_MS = 3_000;
/** How late the cut may come: the server checks every TIMEOUT_MS / 20, plus a loaded machine. */
const LATE_MS = 1_000;

/** The value of one sample line of /metrics (undefined when the series is absent). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

interface Cut {
  /** Milliseconds from the TCP connection until the server closed it. */
  afterMs: number;
  answer: string;
}

/**
 * Opens a connection, calls `behave` with it (what the client sends, and when), and resolves
 * once the server has closed it, with the time that took and what the server said.
 */
async function cutAfter(port: number, behave: (socket: Socket) => () => void): Promise<Cut> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {}); // a reset after the answer is fine
  await once(socket, 'connect');
  const connectedAt = performance.now();
  const stop = behave(socket);
  let answer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    answer += chunk;
  });
  // Bounded: an uncut connection fails the test instead of hanging it.
  const limit = setTimeout(() => socket.destroy(new Error('never cut')), TIMEOUT_MS + 40_000);
  await once(socket, 'close');
  clearTimeout(limit);
  stop();
  assert.notEqual(socket.errored?.message, 'never cut', 'the server never closed the connection');
  return { afterMs: performance.now() - connectedAt, answer };
}

function assertCutOnTime(cut: Cut, what: string): void {
  assert.ok(
    cut.afterMs >= TIMEOUT_MS - 50 && cut.afterMs < TIMEOUT_MS + LATE_MS,
    `${what}: cut after ${Math.round(cut.afterMs)} ms, configured ${TIMEOUT_MS} ms`,
  );
}

function assertRequestTimeout(answer: string, what: string): void {
  assert.match(answer, /^HTTP\/1\.1 408 request_timeout\r\n/, what);
  assert.match(answer, /\r\nX-IPCola-Error: request_timeout\r\n/, what);
  assert.match(
    answer,
    /\r\nProxy-Status: ipcola; error=http_request_error; details="request_timeout"\r\n/,
    what,
  );
  assert.match(answer, /\r\nConnection: close\r\n/, what);
  assert.match(answer, /\r\n\r\nrequest_timeout: .+\n$/, what);
}

describe('slow request headers get 408 at the configured time', () => {
  let server: ServerProcess;
  let dataDir: string;
  let ports: { api: number; proxy: number; socks: number };
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-408-'));
    server = await startServer(
      serverEnv({ DATA_DIR: dataDir, PROXY_HANDSHAKE_TIMEOUT_MS: String(TIMEOUT_MS) }),
      [],
      60_000,
    );
    ports = server.ports as typeof ports;
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('silent, stalled and trickling HTTP clients, and a stalled SOCKS5 handshake, are cut on time', async () => {
    const nothing = () => () => {};
    const [silent, stalled, slowloris, socks] = await Promise.all([
      cutAfter(ports.proxy, nothing),
      cutAfter(ports.proxy, (socket) => {
        socket.write('GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Half: ');
        return () => {};
      }),
      cutAfter(ports.proxy, (socket) => {
        socket.write('GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Slow: ');
        // One header byte a second, never the end of the headers.
        const trickle = setInterval(() => socket.writable && socket.write('a'), 1_000);
        return () => clearInterval(trickle);
      }),
      cutAfter(ports.socks, (socket) => {
        socket.write(Buffer.from([0x05, 0x01, 0x02])); // a greeting, then no credentials
        return () => {};
      }),
    ]);

    assertCutOnTime(silent, 'silent HTTP client');
    assertRequestTimeout(silent.answer, 'silent HTTP client');
    assertCutOnTime(stalled, 'HTTP client stalled mid-headers');
    assertRequestTimeout(stalled.answer, 'HTTP client stalled mid-headers');
    assertCutOnTime(slowloris, 'slowloris');
    assertRequestTimeout(slowloris.answer, 'slowloris');
    // SOCKS5 has no reply for it: the method choice, then the connection is closed.
    assertCutOnTime(socks, 'SOCKS5 handshake');
    assert.equal(Buffer.from(socks.answer, 'latin1').toString('hex'), '0502');

    const text = await (await fetch(`http://127.0.0.1:${ports.api}/metrics`)).text();
    assert.equal(
      sample(text, 'ipcola_proxy_refusals_total{protocol="http",code="request_timeout"}'),
      3,
    );
    assert.equal(
      sample(text, 'ipcola_proxy_refusals_total{protocol="socks5",code="request_timeout"}'),
      1,
    );
    assert.equal(
      sample(text, 'ipcola_proxy_refusals_total{protocol="http",code="bad_params"}'),
      undefined,
    );
  });
});
