import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import {
  type Splice,
  SpliceError,
  type SpliceGate,
  type SpliceResult,
  spliceStreams,
} from '@ipcola/shared/splice';

const MB = 1024 * 1024;
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A connected TCP pair on 127.0.0.1: [client end, server end]. */
async function tcpPair(options: { halfOpen?: boolean } = {}): Promise<[Socket, Socket]> {
  const server: Server = createServer({ allowHalfOpen: options.halfOpen ?? false });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: options.halfOpen ?? false });
  const [[serverSide]] = await Promise.all([accepted, once(client, 'connect')]);
  server.close();
  for (const socket of [client, serverSide]) {
    // The tests cause resets on purpose; an unhandled 'error' would crash the runner.
    socket.on('error', () => {});
    cleanups.push(() => socket.destroy());
  }
  return [client, serverSide];
}

/**
 * client ⇄ [inner a] splice [inner b] ⇄ target. The inner sockets are created with
 * allowHalfOpen false, as a default net server hands them out, to show the splice copes.
 */
async function splicedTcp(idleTimeoutMs = 0, gate?: SpliceGate) {
  const [client, a] = await tcpPair({ halfOpen: true });
  const [b, target] = await tcpPair({ halfOpen: true });
  a.allowHalfOpen = false;
  b.allowHalfOpen = false;
  const ended = deferred<SpliceResult>();
  let calls = 0;
  const splice = spliceStreams(a, b, {
    idleTimeoutMs,
    ...(gate ? { gate } : {}),
    onEnd: (result) => {
      calls += 1;
      ended.resolve(result);
    },
  });
  return { client, a, b, target, splice, ended: ended.promise, calls: () => calls };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Resolves on 'close' (events.once would reject on the 'error' that precedes it). */
function closed(stream: Duplex): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Everything a socket receives until it ends. */
async function readAll(socket: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'end');
  return Buffer.concat(chunks);
}

/** How many listeners each event has, to compare before and after a splice. */
function listenerCounts(stream: Duplex): Record<string, number> {
  const events = ['data', 'end', 'finish', 'error', 'close', 'drain', 'aborted'];
  return Object.fromEntries(events.map((event) => [event, stream.listenerCount(event)]));
}

/** A pair of connected in-memory duplexes that honour back-pressure, like a socket pair. */
function duplexPair(): [Duplex, Duplex] {
  class End extends Duplex {
    peer!: End;
    #blocked: (() => void) | undefined;
    override _read(): void {
      const release = this.peer.#blocked;
      this.peer.#blocked = undefined;
      release?.();
    }
    override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
      if (this.peer.push(chunk)) callback();
      else this.#blocked = callback;
    }
    override _final(callback: () => void): void {
      this.peer.push(null);
      callback();
    }
  }
  const left = new End();
  const right = new End();
  left.peer = right;
  right.peer = left;
  return [left, right];
}

/** Lets the event loop run until `settled` holds, a bounded number of turns. */
async function turnsUntil(settled: () => boolean, turns = 1000): Promise<void> {
  for (let turn = 0; turn < turns; turn++) {
    if (settled()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail('condition not reached within the bounded number of event-loop turns');
}

describe('spliceStreams over TCP sockets', () => {
  test('carries bytes both ways and counts them exactly', async () => {
    const { client, target, ended } = await splicedTcp();
    const up = randomBytes(3 * MB + 17);
    const down = randomBytes(5 * MB + 3);
    const targetGot = readAll(target);
    const clientGot = readAll(client);
    client.end(up);
    target.end(down);
    assert.deepEqual(await targetGot, up);
    assert.deepEqual(await clientGot, down);
    const result = await ended;
    assert.equal(result.error, undefined);
    assert.equal(result.bytesAtoB, up.length);
    assert.equal(result.bytesBtoA, down.length);
  });

  test('a half-close reaches the far end, which can still answer', async () => {
    const { client, a, b, target, ended } = await splicedTcp();
    const targetGot = readAll(target);
    const clientGot = readAll(client);
    client.end('request');
    assert.equal((await targetGot).toString(), 'request');
    // The target saw EOF; the splice is still open the other way.
    assert.equal(a.destroyed || b.destroyed, false);
    target.write('response, ');
    target.end('then EOF');
    assert.equal((await clientGot).toString(), 'response, then EOF');
    const result = await ended;
    assert.equal(result.error, undefined);
    assert.equal(result.bytesAtoB, 'request'.length);
    assert.equal(result.bytesBtoA, 'response, then EOF'.length);
  });

  test('a reset on one side resets the other side', async () => {
    const { client, target, ended } = await splicedTcp();
    client.write('hello');
    await once(target, 'data');
    const clientClosed = closed(client);
    const clientError = new Promise<NodeJS.ErrnoException>((resolve) =>
      client.once('error', resolve),
    );
    target.resetAndDestroy();
    const result = await ended;
    assert.ok(result.error, 'the splice ends with an error');
    assert.equal((await clientError).code, 'ECONNRESET');
    await clientClosed;
  });

  test('an idle splice is aborted after idleTimeoutMs', async () => {
    const { client, a, b, ended } = await splicedTcp(150);
    const started = performance.now();
    const clientClosed = closed(client);
    const result = await ended;
    assert.ok(performance.now() - started >= 140, 'not before the timeout');
    assert.ok(result.error instanceof SpliceError);
    assert.equal(result.error.code, 'idle_timeout');
    assert.ok(a.destroyed && b.destroyed);
    await clientClosed;
  });

  test('traffic in either direction keeps an idle timeout from firing', async () => {
    const { client, target, splice, ended } = await splicedTcp(400);
    // Ten exchanges 40 ms apart last well beyond the timeout.
    for (let round = 0; round < 10; round++) {
      const sender = round % 2 === 0 ? client : target;
      const receiver = round % 2 === 0 ? target : client;
      const arrived = once(receiver, 'data');
      sender.write('x');
      await arrived;
      await new Promise((resolve) => setTimeout(resolve, 40));
      assert.equal(splice.ended, false);
    }
    const result = await ended;
    assert.equal((result.error as SpliceError).code, 'idle_timeout');
    assert.equal(result.bytesAtoB + result.bytesBtoA, 10);
  });

  test('pauses the source while the destination is full, and loses nothing', async () => {
    const { client, a, b, target, ended } = await splicedTcp();
    const buffered: number[] = [];
    const pause = a.pause.bind(a);
    a.pause = () => {
      buffered.push(a.readableLength + b.writableLength);
      return pause();
    };
    target.pause();
    const payload = randomBytes(50 * MB);
    client.end(payload);
    await turnsUntil(() => buffered.length > 0, 100_000);
    const gotAll = readAll(target);
    target.resume();
    assert.ok((await gotAll).equals(payload));
    target.end();
    const result = await ended;
    assert.equal(result.bytesAtoB, payload.length);
    assert.ok(
      Math.max(...buffered) < 4 * MB,
      `at most ${Math.max(...buffered)} bytes held in process memory`,
    );
  });

  test('removes every listener it added before onEnd', async () => {
    const [client, a] = await tcpPair({ halfOpen: true });
    const [b, target] = await tcpPair({ halfOpen: true });
    const before = [listenerCounts(a), listenerCounts(b)];
    const seen = deferred<Array<Record<string, number>>>();
    spliceStreams(a, b, {
      idleTimeoutMs: 10_000,
      onEnd: () => seen.resolve([listenerCounts(a), listenerCounts(b)]),
    });
    client.end('x');
    target.end('y');
    assert.deepEqual(await seen.promise, before);
  });
});

describe('spliceStreams over in-memory duplexes', () => {
  test('removes every listener it added on an abort too', async () => {
    const [, a] = duplexPair();
    const [b] = duplexPair();
    const before = [listenerCounts(a), listenerCounts(b)];
    const seen = deferred<Array<Record<string, number>>>();
    spliceStreams(a, b, {
      idleTimeoutMs: 0,
      onEnd: () => seen.resolve([listenerCounts(a), listenerCounts(b)]),
    });
    a.destroy(new Error('gone'));
    assert.deepEqual(await seen.promise, before);
  });

  test('an error on one side destroys the other and is reported', async () => {
    const [outerA, a] = duplexPair();
    const [b, outerB] = duplexPair();
    const ended = deferred<SpliceResult>();
    spliceStreams(a, b, { idleTimeoutMs: 0, onEnd: ended.resolve });
    outerA.on('error', () => {});
    const boom = new Error('boom');
    b.destroy(boom);
    const result = await ended.promise;
    assert.equal(result.error, boom);
    assert.ok(a.destroyed);
    assert.equal(outerB.destroyed, false, 'only the spliced streams are touched');
  });

  test('onEnd fires exactly once, whatever is destroyed or called twice', async () => {
    const [, a] = duplexPair();
    const [b] = duplexPair();
    let calls = 0;
    const options = { idleTimeoutMs: 0, onEnd: () => calls++ };
    const splice: Splice = spliceStreams(a, b, options);
    assert.equal(spliceStreams(a, b, options), splice, 'the same pair gives the same splice');
    assert.throws(() => spliceStreams(a, duplexPair()[0], options), TypeError);
    splice.destroy();
    splice.destroy(new Error('again'));
    a.destroy(new Error('late'));
    b.destroy();
    await closed(b);
    await turnsUntil(() => calls > 0);
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 1);
    splice.destroy();
    assert.equal(calls, 1);
    assert.equal(splice.ended, true);
  });

  test('a stream that is already destroyed ends the splice at once', async () => {
    const [, a] = duplexPair();
    const [b] = duplexPair();
    a.destroy();
    await closed(a);
    const ended = deferred<SpliceResult>();
    spliceStreams(a, b, { idleTimeoutMs: 0, onEnd: ended.resolve });
    const result = await ended.promise;
    assert.equal((result.error as SpliceError).code, 'premature_close');
    assert.ok(b.destroyed);
  });

  test('a close before the end is an abort', async () => {
    const [outerA, a] = duplexPair();
    const [b] = duplexPair();
    const ended = deferred<SpliceResult>();
    spliceStreams(a, b, { idleTimeoutMs: 0, onEnd: ended.resolve });
    outerA.write('partial');
    a.destroy();
    const result = await ended.promise;
    assert.equal((result.error as SpliceError).code, 'premature_close');
    assert.ok(b.destroyed);
  });

  test('a fast source into a stalled sink reads a bounded amount, then delivers it all', async () => {
    const chunk = 64 * 1024;
    const offered = 50 * MB;
    let produced = 0;
    const source = new Duplex({
      read() {
        if (produced >= offered) {
          this.push(null);
          return;
        }
        produced += chunk;
        this.push(Buffer.alloc(chunk, produced % 251));
      },
      write(_data, _encoding, callback) {
        callback();
      },
    });
    let stalled = true;
    let received = 0;
    const held: Array<() => void> = [];
    const sink = new Duplex({
      read() {},
      write(data: Buffer, _encoding, callback) {
        received += data.length;
        if (stalled) held.push(callback);
        else callback();
      },
    });
    sink.push(null);
    const ended = deferred<SpliceResult>();
    spliceStreams(source, sink, { idleTimeoutMs: 0, onEnd: ended.resolve });

    // Let the pump run until it stops on its own: nothing is produced for 50 turns.
    let last = -1;
    let quiet = 0;
    await turnsUntil(() => {
      quiet = produced === last ? quiet + 1 : 0;
      last = produced;
      return quiet >= 50;
    });
    assert.ok(produced < 4 * MB, `read ${produced} bytes from the source while the sink stalled`);

    stalled = false;
    for (const release of held.splice(0)) release();
    const result = await ended.promise;
    assert.equal(result.error, undefined);
    assert.equal(produced, offered);
    assert.equal(received, offered);
    assert.equal(result.bytesAtoB, offered);
    assert.equal(result.bytesBtoA, 0);
  });
});

describe('spliceStreams with a gate', () => {
  /** A gate that lets `budget` bytes through at once, then grants `grant` more each time it is asked, `grants` times. */
  function budgetGate(budget: number, grant: number, grants: number) {
    const seen = { passed: 0, asked: 0 };
    let left = budget;
    let remainingGrants = grants;
    return {
      seen,
      take(bytes: number): true | Promise<boolean> {
        if (bytes <= left) {
          left -= bytes;
          seen.passed += bytes;
          return true;
        }
        seen.asked += 1;
        return new Promise<boolean>((resolve) =>
          setImmediate(() => {
            if (remainingGrants === 0) return resolve(false);
            remainingGrants -= 1;
            left += Math.max(grant, bytes);
            left -= bytes;
            seen.passed += bytes;
            resolve(true);
          }),
        );
      },
    };
  }

  test('chunks wait for the gate and arrive whole and in order both ways', async () => {
    const gate = budgetGate(64 * 1024, 256 * 1024, 1_000);
    const { client, target, ended } = await splicedTcp(0, gate);
    const up = randomBytes(2 * MB + 5);
    const down = randomBytes(3 * MB + 11);
    const targetGot = readAll(target);
    const clientGot = readAll(client);
    client.end(up);
    target.end(down);
    assert.deepEqual(await targetGot, up);
    assert.deepEqual(await clientGot, down);
    const result = await ended;
    assert.equal(result.error, undefined);
    assert.equal(gate.seen.passed, up.length + down.length);
    assert.ok(gate.seen.asked > 0, 'the gate was waited for');
  });

  test('a gate that refuses resets both sides and writes nothing it did not let through', async () => {
    const gate = budgetGate(64 * 1024, 64 * 1024, 2);
    const { client, target, ended } = await splicedTcp(0, gate);
    let received = 0;
    client.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    const targetError = new Promise<NodeJS.ErrnoException>((resolve) =>
      target.once('error', resolve),
    );
    target.write(randomBytes(4 * MB));
    const result = await ended;
    assert.ok(result.error instanceof SpliceError);
    assert.equal(result.error.code, 'refused');
    assert.ok(result.bytesBtoA <= gate.seen.passed, `${result.bytesBtoA} > ${gate.seen.passed}`);
    assert.ok(gate.seen.passed < 4 * MB);
    assert.equal((await targetError).code, 'ECONNRESET');
    await closed(client);
    assert.ok(received <= gate.seen.passed);
  });
});
