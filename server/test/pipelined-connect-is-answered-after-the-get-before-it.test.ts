/**
 * HTTP/1.1 answers requests on one connection in the order they came (RFC 9112 section
 * 9.3.2). A CONNECT pipelined behind a GET on the same keep-alive connection must therefore
 * be answered after the whole GET response, and the bytes the client sent after the CONNECT
 * must reach the tunnel's target. Node's http server hands the CONNECT over as soon as it is
 * parsed, while the GET's answer is still streaming; answered at once, the GET's bytes ended
 * up inside the tunnel.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

/** Large enough that the exit still streams it when the CONNECT has been parsed. */
const GET_BYTES = 4 * 1024 * 1024;

/** Splits one HTTP/1.1 message with a Content-Length (or none: no body) off the front. */
function takeMessage(bytes: Buffer): { head: string; body: Buffer; rest: Buffer } {
  const end = bytes.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no complete head in ${JSON.stringify(bytes.subarray(0, 200).toString())}`);
  const head = bytes.subarray(0, end).toString('latin1');
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
  const body = bytes.subarray(end + 4, end + 4 + length);
  return { head, body, rest: bytes.subarray(end + 4 + length) };
}

describe('a pipelined CONNECT is answered after the GET before it', () => {
  let net: ProxyNetwork;
  let auth: string;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
    auth = `Basic ${Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64')}`;
  });
  after(() => net?.close());

  test('the whole GET response comes first, then 200 Connection established, then the tunnel', async () => {
    const authority = `127.0.0.1:${net.targetPort}`;
    // One write: the GET, the CONNECT, and a request for the target inside the tunnel.
    const answer = await exchange(
      net.ports.proxy,
      `GET ${net.target}/stream/${GET_BYTES} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n` +
        `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n` +
        `GET /inside HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
      { timeoutMs: 30_000 },
    );

    const got = takeMessage(answer);
    assert.match(got.head, /^HTTP\/1\.1 200 /);
    assert.equal(got.body.length, GET_BYTES);
    assert.ok(
      got.body.every((byte) => byte === 0x63),
      'the GET body holds only the target bytes',
    );

    const established = takeMessage(got.rest);
    assert.match(established.head, /^HTTP\/1\.1 200 Connection established\r\n/);

    // The bytes pipelined after the CONNECT went through the tunnel to the target.
    const inside = takeMessage(established.rest);
    assert.match(inside.head, /^HTTP\/1\.1 200 /);
    assert.equal(inside.body.toString(), '127.0.0.12');
    assert.equal(inside.rest.length, 0);
  });

  test('a refused CONNECT behind a GET is refused after the GET response', async () => {
    const authority = `127.0.0.1:${net.targetPort}`;
    const answer = await exchange(
      net.ports.proxy,
      `GET ${net.target}/stream/${GET_BYTES} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n` +
        `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
      { timeoutMs: 30_000 },
    );
    const got = takeMessage(answer);
    assert.match(got.head, /^HTTP\/1\.1 200 /);
    assert.equal(got.body.length, GET_BYTES);
    assert.ok(got.body.every((byte) => byte === 0x63));
    const refused = takeMessage(got.rest);
    assert.match(refused.head, /^HTTP\/1\.1 407 /);
    assert.match(refused.head, /\r\nX-IPCola-Error: auth_required(\r\n|$)/);
    assert.equal(refused.rest.length, 0);
  });

  test('a malformed request behind a GET is refused after the GET response', async () => {
    const authority = `127.0.0.1:${net.targetPort}`;
    const answer = await exchange(
      net.ports.proxy,
      `GET ${net.target}/stream/${GET_BYTES} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n` +
        `GET ${net.target}/ HTTP/1.1\r\nHost: ${authority}\r\n: an empty header name\r\n\r\n`,
      { timeoutMs: 30_000 },
    );
    const got = takeMessage(answer);
    assert.match(got.head, /^HTTP\/1\.1 200 /);
    assert.equal(got.body.length, GET_BYTES);
    assert.ok(got.body.every((byte) => byte === 0x63));
    const refused = takeMessage(got.rest);
    assert.match(refused.head, /^HTTP\/1\.1 400 bad_params\r\n/);
    assert.equal(refused.rest.length, 0);
  });
});
