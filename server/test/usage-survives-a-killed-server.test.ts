/**
 * kill -9 of the server in the middle of a download, then a restart: GET /v1/usage never
 * reports more than the client moved, and loses at most what the gateway had not yet
 * pushed to hot state (the open-tunnel meter tick plus one push). With Redis the flush
 * interval is set far beyond the test, so everything reported after the restart was
 * recovered from Redis; embedded, it is what had been flushed before the kill.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createScratchDatabase, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/** The gateway's open-tunnel meter tick (2 s) plus the meter's push (1 s), and slack for a busy machine. */
const UNPUSHED_WINDOW_MS = 4_500;
/** The download moves this much before the kill: some 6 s of the target's 6.4 MB/s drip. */
const BEFORE_KILL_BYTES = 40 * 1024 * 1024;

interface Mode {
  name: string;
  skip: string | false;
  env(): Promise<{ env: Record<string, string>; dispose(): Promise<void> }>;
}

const modes: Mode[] = [
  {
    name: 'embedded (PGlite, in-process hot state)',
    skip: false,
    async env() {
      return { env: { USAGE_FLUSH_INTERVAL_MS: '500' }, dispose: async () => {} };
    },
  },
  {
    name: 'PostgreSQL and Redis',
    skip: needs('DATABASE_URL', 'REDIS_URL'),
    async env() {
      const scratch = await createScratchDatabase(required('DATABASE_URL'));
      return {
        env: {
          DATABASE_URL: scratch.url,
          REDIS_URL: required('REDIS_URL'),
          // With DATABASE_URL set, declared locations are not trusted by default.
          TRUST_DECLARED_LOCATION: 'true',
          // Nothing is flushed before the kill: what the API shows came back from Redis.
          USAGE_FLUSH_INTERVAL_MS: '60000',
        },
        dispose: () => scratch.drop(),
      };
    },
  },
];

/** A CONNECT tunnel downloading the target's endless /drip, with its byte counts over time. */
async function startDownload(net: ProxyNetwork) {
  const authority = `127.0.0.1:${net.targetPort}`;
  const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
  const request =
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n` +
    `GET /drip HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
  const socket: Socket = connect(net.ports.proxy, '127.0.0.1');
  await once(socket, 'connect');
  const timeline: Array<{ at: number; down: number }> = [];
  let down = 0;
  const waiting: Array<{ bytes: number; resolve(): void }> = [];
  socket.on('data', (chunk: Buffer) => {
    down += chunk.length;
    timeline.push({ at: performance.now(), down });
    for (const wait of waiting.filter((w) => down >= w.bytes)) {
      waiting.splice(waiting.indexOf(wait), 1);
      wait.resolve();
    }
  });
  socket.on('error', () => {});
  socket.write(request);
  return {
    up: Buffer.byteLength(request),
    get down() {
      return down;
    },
    /** Bytes received by `at` (performance.now() time). */
    downAt(at: number) {
      let last = 0;
      for (const point of timeline) {
        if (point.at > at) break;
        last = point.down;
      }
      return last;
    },
    /** Resolves once `bytes` have arrived; rejects if the socket closes first. */
    reached(bytes: number): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        waiting.push({ bytes, resolve });
        socket.once('close', () => reject(new Error(`closed after ${down} bytes`)));
      });
    },
    closed: once(socket, 'close'),
  };
}

for (const mode of modes) {
  describe(`usage survives a killed server: ${mode.name}`, { skip: mode.skip }, () => {
    let net: ProxyNetwork;
    let disposeEnv: () => Promise<void> = async () => {};
    before(async () => {
      const { env, dispose } = await mode.env();
      disposeEnv = dispose;
      net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
        ...env,
        TRIAL_CREDIT: '50',
      });
    });
    after(async () => {
      await net?.close();
      await disposeEnv();
    });

    test('nothing is counted twice and nothing older than one push is lost', async () => {
      const download = await startDownload(net);
      await download.reached(BEFORE_KILL_BYTES);
      const killedAt = performance.now();
      await net.restartServer('SIGKILL');
      await download.closed;

      // A graceful stop flushes everything hot state holds; the next start reads it back.
      await net.restartServer('SIGTERM');
      const answer = await net.api('/v1/usage');
      assert.equal(answer.status, 200);
      const { totals } = (await answer.json()) as {
        totals: { bytes_up: number; bytes_down: number };
      };
      assert.ok(totals.bytes_up <= download.up, `up: ${totals.bytes_up} > ${download.up} sent`);
      assert.ok(
        totals.bytes_down <= download.down,
        `down: ${totals.bytes_down} reported > ${download.down} received`,
      );
      const floor = download.downAt(killedAt - UNPUSHED_WINDOW_MS);
      assert.ok(floor > 0, 'the download ran long enough before the kill');
      assert.ok(
        totals.bytes_down >= floor,
        `down: ${totals.bytes_down} reported < ${floor} received ${UNPUSHED_WINDOW_MS} ms before the kill`,
      );
    });
  });
}
