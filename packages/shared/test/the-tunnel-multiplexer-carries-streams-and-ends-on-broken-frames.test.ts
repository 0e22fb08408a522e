import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import {
  ANSWER_EVENT,
  FrameError,
  MuxSession,
  type MuxStream,
  type OpenRequest,
  RESET_REFUSED,
  StreamResetError,
} from '@ipcola/shared/mux';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A connected TCP pair on 127.0.0.1, half-open allowed as the hub's sockets are. */
async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const [[serverSide]] = await Promise.all([accepted, once(client, 'connect')]);
  server.close();
  for (const socket of [client, serverSide]) {
    socket.on('error', () => {});
    cleanups.push(() => socket.destroy());
  }
  return [client, serverSide];
}

interface Pair {
  readonly hub: MuxSession;
  readonly agent: MuxSession;
  readonly hubSocket: Socket;
  readonly agentSocket: Socket;
  /** The next stream the agent is offered. */
  accepted(): Promise<[MuxStream, OpenRequest]>;
}

async function sessions(
  options: { maxStreams?: number; windowBytes?: number } = {},
): Promise<Pair> {
  const [hubSocket, agentSocket] = await tcpPair();
  const windowBytes = options.windowBytes ?? 1024 * 1024;
  const hub = new MuxSession({ socket: hubSocket, role: 'opener', windowBytes });
  const agent = new MuxSession({
    socket: agentSocket,
    role: 'acceptor',
    maxStreams: options.maxStreams ?? 100,
    windowBytes,
  });
  for (const session of [hub, agent]) cleanups.push(() => session.destroy());
  // Streams die with an error when the session does (at each test's end); the product
  // listens on every stream, and so do the tests.
  agent.on('stream', (stream) => stream.on('error', () => {}));
  const open = hub.open.bind(hub);
  hub.open = (request) => open(request).on('error', () => {});
  await Promise.all([once(hub, 'ready'), once(agent, 'ready')]);
  return {
    hub,
    agent,
    hubSocket,
    agentSocket,
    accepted: () => once(agent, 'stream') as Promise<[MuxStream, OpenRequest]>,
  };
}

const REQUEST: OpenRequest = { authority: 'example.com:443', exitIp: '10.1.2.3', label: 'req-1' };

function answerOf(stream: MuxStream): Promise<[number, string | undefined]> {
  return once(stream, ANSWER_EVENT) as Promise<[number, string | undefined]>;
}

/**
 * Everything the stream reads until its end, hashed, with the byte count. The stream is
 * left open: its other half may still be writing (a plain for-await destroys it at the end).
 */
async function drain(stream: MuxStream): Promise<{ bytes: number; sha: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha: hash.digest('hex') };
}

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('the tunnel multiplexer', () => {
  test('carries an opened stream both ways, each half ending on its own', async () => {
    const { hub, agent, accepted } = await sessions();
    const offered = accepted();
    const opened = hub.open(REQUEST);
    const [served, request] = await offered;
    assert.deepEqual(request, REQUEST);
    served.respond(200);
    assert.deepEqual(await answerOf(opened), [200, undefined]);

    const up = randomBytes(300_000);
    const down = randomBytes(2_000_000);
    const received = [drain(served), drain(opened)] as const;
    const closed = [once(opened, 'close'), once(served, 'close')];
    opened.end(up);
    // The agent's half stays open after the hub's END: the answer still travels back.
    served.end(down);
    const [atAgent, atHub] = await Promise.all(received);
    assert.deepEqual(atAgent, { bytes: up.length, sha: sha(up) });
    assert.deepEqual(atHub, { bytes: down.length, sha: sha(down) });
    await Promise.all(closed);
    assert.equal(hub.streamCount, 0);
    assert.equal(agent.streamCount, 0);
  });

  test('a refusal reaches the opener with its code and ends the stream on both sides', async () => {
    const { hub, agent, accepted } = await sessions();
    const offered = accepted();
    const opened = hub.open({ ...REQUEST, label: undefined });
    const [served, request] = await offered;
    assert.equal(request.label, undefined);
    served.respond(403, 'target_forbidden');
    const closed = once(opened, 'close');
    assert.deepEqual(await answerOf(opened), [403, 'target_forbidden']);
    await closed;
    assert.equal(hub.streamCount, 0);
    assert.equal(agent.streamCount, 0);
  });

  test('a reader that stops stops its sender after one window, and loses nothing', async () => {
    const windowBytes = 64 * 1024;
    const { hub, agent, accepted } = await sessions({ windowBytes });
    const offered = accepted();
    const opened = hub.open(REQUEST);
    const [served] = await offered;
    served.respond(200);
    await answerOf(opened);
    const payload = randomBytes(4 * 1024 * 1024);
    served.end(payload);
    // Nobody reads the hub's end: what the agent may send is bounded by the window.
    opened.pause();
    // Each PING from the agent is answered only after the hub read every frame sent
    // before it: two answers with nothing new in between mean the agent is held back.
    let held = -1;
    for (let round = 0; round < 50 && held !== opened.readableLength; round += 1) {
      held = opened.readableLength;
      await new Promise((resolve) => agent.ping(resolve));
    }
    assert.equal(held, opened.readableLength, 'the hub kept receiving');
    const bound = windowBytes + opened.readableHighWaterMark;
    assert.ok(held >= windowBytes / 2, `the hub got ${held} bytes`);
    assert.ok(held <= bound, `the hub holds ${held} bytes with a ${windowBytes}-byte window`);
    assert.ok(served.writableLength > 0, 'the agent still holds what it may not send');
    opened.resume();
    const atHub = await drain(opened);
    assert.deepEqual(atHub, { bytes: payload.length, sha: sha(payload) });
  });

  test('an acceptor refuses streams past its limit with a reset the opener sees', async () => {
    const { hub, accepted } = await sessions({ maxStreams: 1 });
    const offered = accepted();
    hub.open(REQUEST);
    await offered;
    const second = hub.open(REQUEST);
    const [error] = (await once(second, 'error')) as [StreamResetError];
    assert.ok(error instanceof StreamResetError);
    assert.equal(error.resetCode, RESET_REFUSED);
    assert.equal(hub.streamCount, 1);
  });

  test('a stream destroyed on one side is destroyed with an error on the other', async () => {
    const { hub, agent, accepted } = await sessions();
    const offered = accepted();
    const opened = hub.open(REQUEST);
    const [served] = await offered;
    served.respond(200);
    await answerOf(opened);
    const closed = new Promise((resolve) => served.once('close', resolve));
    opened.destroy();
    const [error] = (await once(served, 'error')) as [Error];
    assert.ok(error instanceof StreamResetError);
    await closed;
    assert.equal(agent.streamCount, 0);
  });

  test('PING is answered and timed', async () => {
    const { hub, agent } = await sessions();
    for (const session of [hub, agent]) {
      const rtt = await new Promise<number>((resolve, reject) => {
        session.ping((error, ms) => (error ? reject(error) : resolve(ms)));
      });
      assert.ok(rtt >= 0 && rtt < 5_000, `round trip ${rtt} ms`);
    }
  });

  test('GOAWAY stops new streams, lets open ones finish, then closes both ends', async () => {
    const { hub, agent, accepted } = await sessions();
    const offered = accepted();
    const opened = hub.open(REQUEST);
    const [served] = await offered;
    served.respond(200);
    await answerOf(opened);
    const heard = once(hub, 'goaway');
    agent.close('moving to another hub');
    assert.deepEqual(await heard, ['moving to another hub']);
    assert.throws(() => hub.open(REQUEST), /closing/);
    const closed = Promise.all([once(hub, 'close'), once(agent, 'close')]);
    const received = drain(opened);
    served.end('last words');
    opened.end();
    assert.equal((await received).bytes, 'last words'.length);
    const [hubClosed, agentClosed] = await closed;
    assert.deepEqual([hubClosed, agentClosed], [[undefined], [undefined]]);
  });

  test('losing the connection closes every open stream before its end', async () => {
    const { hub, agentSocket, accepted } = await sessions();
    const offered = accepted();
    const opened = hub.open(REQUEST);
    await offered;
    const closed = once(opened, 'close');
    const hubClosed = once(hub, 'close');
    agentSocket.destroy();
    await closed;
    assert.equal(opened.readableEnded, false);
    assert.deepEqual(await hubClosed, [undefined]);
    assert.equal(hub.destroyed, true);
  });

  test('a connection ended by a protocol error fails its streams with that error', async () => {
    const { hub, agent, hubSocket, accepted } = await sessions();
    const offered = accepted();
    hub.open(REQUEST);
    const [served] = await offered;
    const failed = once(served, 'error');
    // An unknown frame type from the hub.
    hubSocket.write(Buffer.from([42, 0, 0, 0, 0, 0, 0, 0, 0]));
    const [error] = (await failed) as [Error];
    assert.ok(error instanceof FrameError);
    assert.equal(agent.destroyed, true);
  });
});

describe('the tunnel multiplexer ends the connection on a broken peer', () => {
  /** Raw bytes written at the acceptor after its SETTINGS were read. */
  async function acceptorHearing(bytes: Buffer, chunked = false): Promise<Error | undefined> {
    const [hubSocket, agentSocket] = await tcpPair();
    const agent = new MuxSession({
      socket: agentSocket,
      role: 'acceptor',
      maxStreams: 10,
      windowBytes: 64 * 1024,
    });
    cleanups.push(() => agent.destroy());
    agent.on('stream', (stream) => stream.on('error', () => {}));
    const closed = once(agent, 'close') as Promise<[Error | undefined]>;
    if (!chunked) hubSocket.write(bytes);
    else for (const byte of bytes) hubSocket.write(Buffer.from([byte]));
    const [error] = await closed;
    return error;
  }

  function frame(type: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
    const header = Buffer.alloc(9);
    header[0] = type;
    header.writeUInt32BE(id, 1);
    header.writeUInt32BE(payload.length, 5);
    return Buffer.concat([header, payload]);
  }
  const settings = (maxStreams: number, window: number) => {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(maxStreams, 0);
    payload.writeUInt32BE(window, 4);
    return frame(0, 0, payload);
  };
  const open = (id: number) => frame(1, id, Buffer.from('example.com:80\n10.0.0.1'));

  const cases: Array<[string, Buffer, RegExp]> = [
    ['a frame before SETTINGS', frame(7, 0, Buffer.alloc(8)), /before SETTINGS/],
    ['a second SETTINGS', Buffer.concat([settings(0, 65536), settings(0, 65536)]), /twice/],
    ['a window outside the bounds', settings(0, 1), /outside/],
    ['an unknown frame type', Buffer.concat([settings(0, 65536), frame(42, 0)]), /unknown/],
    [
      'a control frame over its limit',
      Buffer.concat([settings(0, 65536), frame(1, 1, Buffer.alloc(2048))]),
      /limit/,
    ],
    [
      'stream ids that go backwards',
      Buffer.concat([settings(0, 65536), open(5), open(3)]),
      /not odd and above/,
    ],
    [
      'DATA past the window',
      Buffer.concat([
        settings(0, 65536),
        open(1),
        frame(3, 1, Buffer.alloc(60_000)),
        frame(3, 1, Buffer.alloc(60_000)),
      ]),
      /past its window/,
    ],
    [
      'DATA for a stream never opened',
      Buffer.concat([settings(0, 65536), frame(3, 9, Buffer.alloc(10))]),
      /never opened/,
    ],
    [
      'an ANSWER sent to the acceptor',
      Buffer.concat([settings(0, 65536), frame(2, 1, Buffer.from([0, 200]))]),
      /does not answer/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    test(`${what} closes it with a protocol error`, async () => {
      const error = await acceptorHearing(bytes);
      assert.ok(error instanceof FrameError, `closed with ${String(error)}`);
      assert.match(error.message, message);
    });
  }

  test('a peer that floods PINGs and reads nothing gets a bounded number of PONGs queued', async () => {
    const [hubSocket, agentSocket] = await tcpPair();
    const agent = new MuxSession({
      socket: agentSocket,
      role: 'acceptor',
      maxStreams: 10,
      windowBytes: 64 * 1024,
    });
    cleanups.push(() => agent.destroy());
    hubSocket.pause();
    const pings = 1_000_000;
    const flood = Buffer.concat(Array.from({ length: pings }, () => frame(7, 0, Buffer.alloc(8))));
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, agentSocket.writableLength);
    }, 5);
    hubSocket.write(Buffer.concat([settings(0, 65536), flood]));
    // Each PING is read once the one before it was: a PING of our own, sent after the
    // flood, is read after all of them.
    await new Promise<void>((resolve, reject) => {
      hubSocket.write(frame(7, 0, Buffer.alloc(8)), (error) => (error ? reject(error) : resolve()));
    });
    let rounds = 0;
    while (agentSocket.bytesRead < 17 * (pings + 1) + 17 && rounds < 10_000) {
      await new Promise((resolve) => setImmediate(resolve));
      rounds += 1;
    }
    clearInterval(watch);
    most = Math.max(most, agentSocket.writableLength);
    assert.ok(agentSocket.bytesRead >= 17 * (pings + 1), 'the acceptor read every PING');
    // The socket's high-water mark (16 KiB) and the few PONGs past it, whatever the flood.
    assert.ok(most <= 64 * 1024, `${most} bytes of PONGs queued in the acceptor`);
    assert.equal(agent.destroyed, false);
  });

  test('frames split into single bytes read the same as whole ones', async () => {
    const [hubSocket, agentSocket] = await tcpPair();
    const agent = new MuxSession({
      socket: agentSocket,
      role: 'acceptor',
      maxStreams: 10,
      windowBytes: 64 * 1024,
    });
    cleanups.push(() => agent.destroy());
    const offered = once(agent, 'stream') as Promise<[MuxStream, OpenRequest]>;
    const bytes = Buffer.concat([settings(0, 65536), open(1), frame(3, 1, Buffer.from('hello'))]);
    for (const byte of bytes) hubSocket.write(Buffer.from([byte]));
    const [stream, request] = await offered;
    stream.on('error', () => {});
    assert.deepEqual(request, {
      authority: 'example.com:80',
      exitIp: '10.0.0.1',
      label: undefined,
    });
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    assert.equal(chunk.toString(), 'hello');
  });
});
