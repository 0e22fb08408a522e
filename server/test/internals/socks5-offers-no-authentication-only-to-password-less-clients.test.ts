/**
 * The SOCKS5 listener chooses method 0x00 ("no authentication") only when the client
 * offers nothing better and admitWithoutAuthentication() finds a key for its address;
 * every other greeting keeps RFC 1928's answer. Refusals of a password-less client come
 * back as precisely as those of a client with credentials.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, type Server } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { ipcolaError } from '../../src/errors/index.ts';
import { createSocks5Server, type Socks5Options } from '../../src/gateway/socks5.ts';
import { createLogger } from '../../src/log/index.ts';

type Auth = { key: string };
const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

interface Seen {
  port: number;
  passwordless: string[];
  authenticated: number;
  connected: Auth[];
}

async function startListener(
  admitWithoutAuthentication?: Socks5Options<Auth, PassThrough>['admitWithoutAuthentication'],
): Promise<Seen> {
  const seen: Seen = { port: 0, passwordless: [], authenticated: 0, connected: [] };
  const server = createSocks5Server<Auth, PassThrough>({
    handshakeTimeoutMs: 5_000,
    logger: createLogger('silent'),
    async authenticate() {
      seen.authenticated += 1;
      return { key: 'with-password' };
    },
    ...(admitWithoutAuthentication
      ? {
          admitWithoutAuthentication: (client) => {
            seen.passwordless.push(client.address);
            return admitWithoutAuthentication(client);
          },
        }
      : {}),
    async connect(auth) {
      seen.connected.push(auth);
      return new PassThrough();
    },
    tunnel(socket, upstream) {
      // An echo through the "upstream": what the client sends comes back.
      socket.pipe(upstream).pipe(socket);
    },
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  seen.port = (server.address() as AddressInfo).port;
  return seen;
}

/** Sends each frame once `expect` bytes of answer to the previous one have come; answers them all. */
async function converse(port: number, frames: Array<[Buffer, number]>): Promise<number[][]> {
  const socket = connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  const answers: number[][] = [];
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
  });
  const closed = once(socket, 'close');
  for (const [frame, expect] of frames) {
    socket.write(frame);
    const deadline = Date.now() + 5_000;
    while (received.length < expect && socket.readyState !== 'closed') {
      if (Date.now() > deadline) assert.fail(`no ${expect}-byte answer to ${[...frame]}`);
      await Promise.race([once(socket, 'data'), closed]);
    }
    answers.push([...received.subarray(0, expect)]);
    received = received.subarray(expect);
  }
  socket.destroy();
  return answers;
}

const NO_AUTH = Buffer.from([5, 1, 0]);
const CONNECT = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);

describe('SOCKS5 "no authentication"', () => {
  test('without a password-less admission the listener answers 05 FF, as RFC 1928 says', async () => {
    const seen = await startListener();
    assert.deepEqual(await converse(seen.port, [[NO_AUTH, 2]]), [[5, 0xff]]);
  });

  test('an address with no key is refused with 05 FF; one with a key tunnels as that key', async () => {
    let admit: Auth | null = null;
    const seen = await startListener(async () => admit);
    assert.deepEqual(await converse(seen.port, [[NO_AUTH, 2]]), [[5, 0xff]]);
    admit = { key: 'password-less' };
    const answers = await converse(seen.port, [
      [NO_AUTH, 2],
      [CONNECT, 10],
      [Buffer.from('ping'), 4],
    ]);
    assert.deepEqual(answers, [[5, 0], [5, 0, 0, 1, 0, 0, 0, 0, 0, 0], [...Buffer.from('ping')]]);
    assert.deepEqual(seen.connected, [{ key: 'password-less' }]);
    assert.deepEqual(seen.passwordless, ['127.0.0.1', '127.0.0.1']);
    assert.equal(seen.authenticated, 0);
  });

  test('a refusal of the key answers the request with its REP byte; a failed sign-in is 05 FF', async () => {
    let refusal = ipcolaError('quota_exhausted');
    const seen = await startListener(async () => {
      throw refusal;
    });
    assert.deepEqual(
      await converse(seen.port, [
        [NO_AUTH, 2],
        [CONNECT, 10],
      ]),
      [
        [5, 0],
        [5, 2, 0, 1, 0, 0, 0, 0, 0, 0],
      ],
    );
    refusal = ipcolaError('rate_limited');
    assert.deepEqual(
      (
        await converse(seen.port, [
          [NO_AUTH, 2],
          [CONNECT, 10],
        ])
      )[1]?.[1],
      2,
    );
    refusal = ipcolaError('auth_failed');
    assert.deepEqual(await converse(seen.port, [[NO_AUTH, 2]]), [[5, 0xff]]);
    assert.deepEqual(seen.connected, [], 'a refused client never reaches connect()');
  });

  test('a client that also offers username/password gets method 02, and its credentials decide', async () => {
    const seen = await startListener(async () => ({ key: 'password-less' }));
    const answers = await converse(seen.port, [
      [Buffer.from([5, 2, 0, 2]), 2],
      [Buffer.from([1, 1, 0x75, 1, 0x70]), 2],
      [CONNECT, 10],
    ]);
    assert.deepEqual(answers.slice(0, 2), [
      [5, 2],
      [1, 0],
    ]);
    assert.deepEqual(seen.passwordless, [], 'the password-less lookup is not asked');
    assert.deepEqual(seen.connected, [{ key: 'with-password' }]);
  });
});
