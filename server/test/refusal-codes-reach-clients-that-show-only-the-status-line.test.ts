/**
 * Many clients show only the status line of a refused CONNECT (curl -v, Python's
 * http.client), never its X-IPCola-Error header or body; undici shows only the status
 * code. So every
 * refusal of the HTTP proxy has its code as the reason phrase (`HTTP/1.1 407 auth_failed`,
 * which RFC 9112 allows): CONNECT refusals, forward-proxy refusals, and the requests Node
 * cannot parse (`400 bad_params`, `431 bad_params`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ProxyAgent, request as undiciRequest } from 'undici';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';

const run = promisify(execFile);

/** What a command printed on stdout and stderr, whatever its exit status. */
async function outputOf(command: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: 20_000 });
    return stdout + stderr;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; killed?: boolean };
    assert.ok(!failed.killed, `${command} did not finish`);
    return `${failed.stdout ?? ''}${failed.stderr ?? ''}`;
  }
}

/** Python's http.client through the proxy; prints the error it raises. */
const PYTHON_TUNNEL = `
import http.client, sys
proxy_port, target_port, auth = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
connection.set_tunnel("127.0.0.1", target_port, headers={"Proxy-Authorization": auth} if auth else None)
try:
    connection.request("GET", "/")
    print("status", connection.getresponse().status)
except OSError as error:
    print("error", error)
`;

describe('refusal codes reach clients that show only the status line', () => {
  let net: ProxyNetwork;
  before(async () => {
    // No exit: a CONNECT with the right key is refused with no_exit_available.
    net = await startProxyNetwork([]);
  });
  after(() => net?.close());

  const basic = (username: string, secret: string) =>
    `Basic ${Buffer.from(`${username}:${secret}`).toString('base64')}`;
  const proxyWith = (username: string, secret: string) =>
    `http://${username}:${secret}@127.0.0.1:${net.ports.proxy}`;

  test('curl shows the code of a refused CONNECT in the status line it prints', async () => {
    const https = `https://127.0.0.1:${net.targetPort}/`;
    const cases: Array<[string, string[], string]> = [
      ['no credentials', ['-x', `http://127.0.0.1:${net.ports.proxy}`], '407 auth_required'],
      ['a wrong secret', ['-x', proxyWith(net.key.id, 'wrong')], '407 auth_failed'],
      [
        'a bad parameter',
        ['-x', proxyWith(`${net.key.id}-country-xx1`, net.key.secret)],
        '400 bad_params',
      ],
      ['no exit', ['-x', proxyWith(net.key.id, net.key.secret)], '503 no_exit_available'],
    ];
    for (const [name, args, status] of cases) {
      const output = await outputOf('curl', ['-sv', '--max-time', '10', ...args, https]);
      assert.match(output, new RegExp(`< HTTP/1\\.1 ${status}\\r?\\n`), name);
      assert.match(output, /CONNECT tunnel failed/, name);
    }
  });

  test("Python's http.client raises an error that names the code", async () => {
    const cases: Array<[string, string]> = [
      ['', '407 auth_required'],
      [basic(net.key.id, 'wrong'), '407 auth_failed'],
      [basic(net.key.id, net.key.secret), '503 no_exit_available'],
    ];
    for (const [auth, status] of cases) {
      const output = await outputOf('python3', [
        '-c',
        PYTHON_TUNNEL,
        String(net.ports.proxy),
        String(net.targetPort),
        auth,
      ]);
      assert.equal(output.trim(), `error Tunnel connection failed: ${status}`);
    }
  });

  test("undici's ProxyAgent rejects with the status code (it does not keep the reason phrase)", async () => {
    const agent = new ProxyAgent({
      uri: `http://127.0.0.1:${net.ports.proxy}`,
      token: basic(net.key.id, 'wrong'),
    });
    try {
      await assert.rejects(
        undiciRequest(`https://127.0.0.1:${net.targetPort}/`, { dispatcher: agent }),
        (error: Error) => /\(407\)/.test(error.message),
      );
    } finally {
      await agent.close();
    }
  });

  test('forward-proxy refusals carry the code as their reason phrase', async () => {
    const statusOf = (auth: string | undefined) =>
      new Promise<string>((resolve, reject) => {
        const req = request({
          host: '127.0.0.1',
          port: net.ports.proxy,
          path: `${net.target}/`,
          headers: auth ? { 'proxy-authorization': auth } : {},
        });
        req.on('response', (res) => {
          res.resume();
          resolve(`${res.statusCode} ${res.statusMessage}`);
        });
        req.on('error', reject);
        req.end();
      });
    assert.equal(await statusOf(undefined), '407 auth_required');
    assert.equal(await statusOf(basic(net.key.id, 'wrong')), '407 auth_failed');
    assert.equal(await statusOf(basic(net.key.id, net.key.secret)), '503 no_exit_available');

    const output = await outputOf('curl', [
      '-sv',
      '--max-time',
      '10',
      '-x',
      proxyWith(net.key.id, 'wrong'),
      `${net.target}/`,
    ]);
    assert.match(output, /< HTTP\/1\.1 407 auth_failed\r?\n/);
  });

  test('requests Node cannot parse are 400 bad_params, oversized headers 431 bad_params', async () => {
    const malformed = await exchangeText(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\n: empty\r\n\r\n`,
    );
    assert.match(malformed, /^HTTP\/1\.1 400 bad_params\r\n/);
    const oversized = await exchangeText(
      net.ports.proxy,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
    );
    assert.match(oversized, /^HTTP\/1\.1 431 bad_params\r\n/);
    assert.match(oversized, /\r\nX-IPCola-Error: bad_params\r\n/);
  });
});
