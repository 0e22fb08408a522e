import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/** Sends raw bytes to the proxy port and collects everything until the gateway closes. */
async function raw(port: number, bytes: string): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {}); // a reset after the answer is fine
  socket.write(bytes);
  let answer = '';
  for await (const chunk of socket) answer += chunk;
  return answer;
}

const basic = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

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
