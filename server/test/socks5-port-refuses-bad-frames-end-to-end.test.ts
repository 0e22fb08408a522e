/**
 * Bad SOCKS5 input against the real server's SOCKS port, with real keys and a real exit
 * node: every frame is answered as RFC 1928/1929 say (or the connection is closed when
 * the client does not speak SOCKS5 at all), no target connection is ever opened for a
 * frame that did not get that far, and the port keeps serving.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

const REGION = 'r'.repeat(64);
const CITY = 'c'.repeat(64);
/** The gateway's handshake deadline (GatewayTimeouts.handshakeMs). */
const HANDSHAKE_MS = 10_000;

const greeting = (...methods: number[]) => Buffer.from([0x05, methods.length, ...methods]);
function credentials(username: string | Buffer, password: string | Buffer): Buffer {
  const user = Buffer.from(username);
  const pass = Buffer.from(password);
  return Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([pass.length]), pass]);
}
const connectTo = (port: number) =>
  Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]);
const SUCCESS = '05000001000000000000';
const HTTP_GET = Buffer.from('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');

describe('the SOCKS5 port of the real gateway refuses bad frames and stays up', () => {
  let net: ProxyNetwork;
  let goodAuth: Buffer;
  /** A target that counts the connections it is offered: none may come from bad frames. */
  let sink: Server;
  let sinkPort: number;
  let sinkConnections = 0;

  before(async () => {
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de', args: ['--region', REGION, '--city', CITY] },
    ]);
    goodAuth = credentials(`${net.key.id}-country-de`, net.key.secret);
    sink = createServer((socket) => {
      sinkConnections += 1;
      socket.on('error', () => {});
      socket.end();
    });
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    sinkPort = (sink.address() as { port: number }).port;
  });
  after(async () => {
    sink?.close();
    await net?.close();
  });

  const hex = async (...frames: Buffer[]) =>
    (await exchange(net.ports.socks, Buffer.concat(frames))).toString('hex');

  test('NMETHODS 0, and NMETHODS 255 without username/password, get 05 FF', async () => {
    assert.equal(await hex(greeting()), '05ff');
    const without = Array.from({ length: 255 }, (_, i) => (i === 2 ? 0xfe : i));
    assert.equal(await hex(greeting(...without)), '05ff');
  });

  test('NMETHODS 255 with every method byte is served', async () => {
    const every = Array.from({ length: 255 }, (_, i) => 254 - i);
    const answer = await exchange(
      net.ports.socks,
      Buffer.concat([greeting(...every), goodAuth, connectTo(net.targetPort), HTTP_GET]),
    );
    assert.equal(answer.subarray(0, 14).toString('hex'), `05020100${SUCCESS}`);
    assert.match(answer.subarray(14).toString(), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\n127\.0\.0\.12$/);
  });

  test('a username of 255 bytes (the key with every targeting parameter) is served', async () => {
    const prefix = `${net.key.id}-country-de-region-${REGION}-city-${CITY}-type-residential-session-`;
    const session = 's'.repeat(255 - prefix.length);
    assert.ok(session.length >= 1 && session.length <= 64, `session of ${session.length}`);
    const username = `${prefix}${session}`;
    assert.equal(username.length, 255);
    const answer = await exchange(
      net.ports.socks,
      Buffer.concat([
        greeting(0x02),
        credentials(username, net.key.secret),
        connectTo(net.targetPort),
        HTTP_GET,
      ]),
    );
    assert.equal(answer.subarray(0, 14).toString('hex'), `05020100${SUCCESS}`);
    assert.match(answer.subarray(14).toString(), /\r\n\r\n127\.0\.0\.12$/);
  });

  test('usernames and passwords of length 0 and 255 that are not a key fail RFC 1929 (01 01)', async () => {
    const cases: Array<[string, Buffer]> = [
      ['username of length 0', credentials('', net.key.secret)],
      ['username of 255 bytes', credentials('k'.repeat(255), net.key.secret)],
      ['password of length 0', credentials(`${net.key.id}-country-de`, '')],
      ['password of 255 bytes', credentials(`${net.key.id}-country-de`, 'p'.repeat(255))],
    ];
    for (const [name, frame] of cases) {
      assert.equal(await hex(greeting(0x02), frame, connectTo(sinkPort)), '05020101', name);
    }
  });

  test('a SOCKS4 greeting, plain HTTP and TLS on the SOCKS port are closed without a word', async () => {
    assert.equal(await hex(Buffer.from([0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0x00])), '');
    assert.equal(await hex(Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n')), '');
    assert.equal(await hex(Buffer.from('CONNECT 127.0.0.1:80 HTTP/1.1\r\n\r\n')), '');
    assert.equal(await hex(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05])), '');
  });

  test('frames cut anywhere are closed: at once when the client ends, at the handshake deadline when it goes silent', async () => {
    const full = Buffer.concat([greeting(0x02), goodAuth, connectTo(sinkPort)]);
    const afterGreeting = 3;
    const afterAuth = afterGreeting + goodAuth.length;
    /** Replies to the whole frames within the first `cut` bytes. */
    const expected = (cut: number) => {
      if (cut >= afterAuth) return '05020100';
      if (cut >= afterGreeting) return '0502';
      return '';
    };
    const runs: Array<Promise<void>> = [];
    for (let cut = 1; cut < full.length; cut++) {
      for (const end of [true, false]) {
        runs.push(
          (async () => {
            const started = performance.now();
            const answer = (
              await exchange(net.ports.socks, full.subarray(0, cut), {
                end,
                timeoutMs: HANDSHAKE_MS + 10_000,
              })
            ).toString('hex');
            const label = `cut at ${cut} of ${full.length}, ${end ? 'ended' : 'silent'}: ${answer}`;
            if (end) {
              // The client may leave before authentication has answered.
              assert.ok(expected(cut).startsWith(answer), label);
            } else {
              assert.equal(answer, expected(cut), label);
              assert.ok(performance.now() - started >= HANDSHAKE_MS - 50, label);
            }
          })(),
        );
      }
    }
    await Promise.all(runs);
    assert.equal(sinkConnections, 0, 'a truncated request reached a target');
  });

  test('after all of that the port serves, and no client or target connection is left open', async () => {
    const answer = await exchange(
      net.ports.socks,
      Buffer.concat([greeting(0x02), goodAuth, connectTo(net.targetPort), HTTP_GET]),
    );
    assert.match(answer.subarray(14).toString(), /\r\n\r\n127\.0\.0\.12$/);
    assert.equal(sinkConnections, 0);
    assert.equal(net.server.child.exitCode, null);
    await eventually(
      async () => (await net.clientConnections()).length === 0,
      10_000,
      'every client connection to close',
    );
    await eventually(
      async () => (await net.egressConnections(net.targetPort)).length === 0,
      15_000,
      'every exit connection to the target to close',
    );
  });
});
