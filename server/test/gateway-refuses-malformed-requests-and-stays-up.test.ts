import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/**
 * Sends raw bytes to the proxy port and collects everything until the gateway closes;
 * fails if it has not closed within `timeoutMs` (a refusal must not leave the socket open).
 */
async function raw(port: number, bytes: string, timeoutMs = 10_000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {}); // a reset after the answer is fine
  socket.setEncoding('latin1');
  socket.write(bytes);
  let answer = '';
  socket.on('data', (chunk: string) => {
    answer += chunk;
  });
  const timer = setTimeout(() => socket.destroy(new Error('still open')), timeoutMs);
  const hadError = await new Promise<boolean>((resolve) => socket.once('close', resolve));
  clearTimeout(timer);
  if (hadError && socket.errored?.message === 'still open') {
    assert.fail(
      `the gateway kept the connection open ${timeoutMs} ms; got ${JSON.stringify(answer)}`,
    );
  }
  return answer;
}

const basic = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

/** Transfer-Encoding and Content-Length spellings that front and back ends could read apart. */
const obfuscatedFraming: Array<[string, string]> = [
  ['Transfer-Encoding: xchunked', 'Transfer-Encoding: xchunked'],
  ['chunked not the last coding', 'Transfer-Encoding: chunked, identity'],
  ['Transfer-Encoding: identity alone', 'Transfer-Encoding: identity'],
  ['a quoted "chunked"', 'Transfer-Encoding: "chunked"'],
  ['chunked with a parameter', 'Transfer-Encoding: chunked;foo=bar'],
  ['a NUL inside chunked', 'Transfer-Encoding: chu\0nked'],
  ['a vertical tab before chunked', 'Transfer-Encoding: \x0bchunked'],
  ['Transfer-Encoding folded onto a second line', 'Transfer-Encoding:\r\n chunked'],
  ['a folded line carrying Transfer-Encoding', 'X-Pad: y\r\n Transfer-Encoding: chunked'],
  ['a header line starting with a space', ' Transfer-Encoding: chunked'],
  ['Transfer-Encoding twice', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity'],
  ['chunked twice', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked'],
  [
    'Content-Length with Transfer-Encoding: identity',
    'Content-Length: 4\r\nTransfer-Encoding: identity',
  ],
  ['two different Content-Lengths', 'Content-Length: 4\r\nContent-Length: 5'],
  ['a Content-Length list', 'Content-Length: 4, 4'],
  ['a signed Content-Length', 'Content-Length: +4'],
  ['a hexadecimal Content-Length', 'Content-Length: 0x4'],
];

describe('the gateway refuses malformed requests clearly and stays up', () => {
  let net: ProxyNetwork;
  let auth: string;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
    auth = basic(`${net.key.id}-country-de`, net.key.secret);
  });
  after(() => net.close());

  const cases: Array<[string, () => string]> = [
    [
      'Content-Length together with Transfer-Encoding',
      () =>
        `POST ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'an obfuscated Transfer-Encoding',
      () =>
        `POST ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
    ],
    ...obfuscatedFraming.map(([name, header]): [string, () => string] => [
      name,
      // The head alone: a gateway that accepted it would wait for a body, and time out.
      () =>
        `POST ${net.target}/echo HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\n${header}\r\n\r\n`,
    ]),
    ['an empty header name', () => `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\n: empty\r\n\r\n`],
    ['bare CR line ends', () => `GET ${net.target}/ HTTP/1.1\rHost: t\r\r`],
  ];
  for (const [name, request] of cases) {
    test(`${name} gets 400 with an error code and the connection closed`, async () => {
      const answer = await raw(net.ports.proxy, request());
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /\r\nX-IPCola-Error: bad_params\r\n/);
      assert.match(answer, /\r\nConnection: close\r\n/);
    });
  }

  test('spellings of chunked that RFC 9112 allows frame the body alike at gateway and target', async () => {
    // Case, a tab as whitespace, trailing whitespace, and an earlier coding before the
    // final chunked. Whatever follows the chunked body is the next request to the
    // gateway (here without credentials: 407), never body bytes or a request at the target.
    for (const header of [
      'Transfer-Encoding: CHUNKED',
      'Transfer-Encoding:\tchunked',
      'Transfer-Encoding: chunked ',
      'Transfer-Encoding: identity, chunked',
    ]) {
      const answer = await raw(
        net.ports.proxy,
        `POST ${net.target}/echo HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\n${header}\r\n\r\n` +
          `5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n` +
          `GET ${net.target}/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`,
      );
      const responses = answer.split(/(?=HTTP\/1\.1 \d{3} )/);
      assert.equal(responses.length, 2, `${header}: ${JSON.stringify(answer)}`);
      assert.match(responses[0] ?? '', /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nhello world$/, header);
      assert.match(
        responses[1] ?? '',
        /^HTTP\/1\.1 407 [\s\S]*\r\nX-IPCola-Error: auth_required\r\n/,
      );
    }
  });

  test("a client's Connection: close closes the connection after the answer; the target's hop-by-hop headers stay behind", async () => {
    const started = performance.now();
    // raw() fails unless the gateway closes well before its 30 s keep-alive timeout.
    const answer = await raw(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`,
      5_000,
    );
    assert.ok(performance.now() - started < 5_000);
    const head = answer.slice(0, answer.indexOf('\r\n\r\n')).toLowerCase();
    assert.match(head, /^http\/1\.1 200 /);
    assert.match(head, /\r\nconnection: close(\r\n|$)/);
    // The whoami target answers keep-alive with `Keep-Alive: timeout=5`: that was the
    // exit's connection to it, and is not the gateway's promise to the client.
    assert.doesNotMatch(head, /\r\nkeep-alive:/);
    assert.match(answer, /\r\n\r\n127\.0\.0\.12$/);
  });

  test('CRLF inside the proxy username is bad_params, and nothing is injected', async () => {
    const answer = await raw(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(`${net.key.id}-country-de\r\nX-Injected: 1`, net.key.secret)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /\r\nX-IPCola-Error: bad_params\r\n/);
    assert.doesNotMatch(answer, /\r\nX-Injected/);
  });

  test('a 10 KB username is bad_params', async () => {
    const answer = await raw(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${basic(`${net.key.id}-${'city-x-'.repeat(1460)}`, net.key.secret)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /\r\nX-IPCola-Error: bad_params\r\n/);
  });

  test('Proxy-Authorization and Proxy-Connection never reach the target; no Via or X-Forwarded-For is added', async () => {
    // A target that echoes the request head it received.
    const { createServer } = await import('node:http');
    const echo = createServer((req, res) => res.end(JSON.stringify(req.headers)));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    try {
      const port = (echo.address() as { port: number }).port;
      const answer = await raw(
        net.ports.proxy,
        `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${auth}\r\nProxy-Connection: keep-alive\r\nX-Custom: kept\r\nConnection: close\r\n\r\n`,
      );
      const seen = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<
        string,
        string
      >;
      assert.equal(seen['x-custom'], 'kept');
      for (const name of ['proxy-authorization', 'proxy-connection', 'via', 'x-forwarded-for']) {
        assert.equal(seen[name], undefined, name);
      }
    } finally {
      echo.close();
    }
  });

  test('after all of that, a good request still works', async () => {
    const answer = await raw(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /127\.0\.0\.12$/);
    assert.equal(net.server.child.exitCode, null);
  });
});
