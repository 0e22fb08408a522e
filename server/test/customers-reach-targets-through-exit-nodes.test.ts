import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SocksClient } from 'socks';
import { ProxyAgent, request } from 'undici';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const run = promisify(execFile);

interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** curl as a customer runs it; -i so refusals' headers can be checked. */
async function curl(args: string[]): Promise<CurlResult> {
  const { stdout } = await run('curl', ['-sS', '-i', '--max-time', '15', ...args], {
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  // With -p (CONNECT) curl prints the proxy's answer first; the last response is the one that counts.
  const responses = stdout.split(/\r\n\r\n(?=HTTP\/)/);
  const last = responses.at(-1) ?? '';
  const [head = '', ...rest] = last.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

describe('customers reach targets through exit nodes', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
      { ip: '127.0.0.14', country: 'us' },
    ]);
  });
  after(() => net.close());

  test('plain HTTP with country-de always leaves through the de exit', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await curl(['-x', net.proxyUrl('-country-de'), `${net.target}/`]);
      assert.equal(res.status, 200);
      assert.equal(res.body, '127.0.0.12');
      assert.equal(res.headers['x-ipcola-exit-country'], 'de');
    }
  });

  test('CONNECT tunnels carry the same traffic and answer with the exit country', async () => {
    const res = await curl(['-p', '-x', net.proxyUrl('-country-de'), `${net.target}/`]);
    assert.equal(res.status, 200);
    assert.equal(res.body, '127.0.0.12');
  });

  test('SOCKS5 with username and password reaches the target through the chosen country', async () => {
    const socks = await curl([
      '--socks5-hostname',
      `127.0.0.1:${net.ports.socks}`,
      '-U',
      `${net.key.id}-country-de:${net.key.secret}`,
      `${net.target}/`,
    ]);
    assert.equal(socks.body, '127.0.0.12');
    // and with the socks client library, by IPv4 address
    const { socket } = await SocksClient.createConnection({
      proxy: {
        host: '127.0.0.1',
        port: net.ports.socks,
        type: 5,
        userId: `${net.key.id}-country-us`,
        password: net.key.secret,
      },
      command: 'connect',
      destination: { host: '127.0.0.1', port: net.targetPort },
    });
    socket.write('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    let answer = '';
    for await (const chunk of socket) answer += chunk;
    assert.match(answer, /\r\n\r\n127\.0\.0\.1[34]$/);
  });

  test('a session keeps one exit IP; without one, requests spread over every matching exit', async () => {
    const sticky = new Set<string>();
    for (let i = 0; i < 8; i++) {
      sticky.add(
        (await curl(['-x', net.proxyUrl('-country-us-session-e2e1'), `${net.target}/`])).body,
      );
    }
    assert.equal(sticky.size, 1, `one exit for the session, saw ${[...sticky]}`);
    const spread = new Set<string>();
    for (let i = 0; i < 20 && spread.size < 2; i++) {
      spread.add((await curl(['-x', net.proxyUrl('-country-us'), `${net.target}/`])).body);
    }
    assert.deepEqual([...spread].sort(), ['127.0.0.13', '127.0.0.14']);
  });

  test('undici ProxyAgent works through the gateway', async () => {
    const dispatcher = new ProxyAgent(net.proxyUrl('-country-de'));
    try {
      const res = await request(`${net.target}/`, { dispatcher });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), '127.0.0.12');
    } finally {
      await dispatcher.close();
    }
  });

  test('a 5 MB download arrives whole and the gateway keeps serving', async () => {
    const res = await curl([
      '-p',
      '-x',
      net.proxyUrl('-country-de'),
      `${net.target}/bytes/5000000`,
    ]);
    assert.equal(res.status, 200);
    assert.equal(res.body.length, 5_000_000);
  });

  const refusals: Array<{
    name: string;
    args: () => string[];
    status: number;
    code: string;
    retryAfter?: boolean;
  }> = [
    {
      name: 'no credentials',
      args: () => ['-x', `http://127.0.0.1:${net.ports.proxy}`, `${net.target}/`],
      status: 407,
      code: 'auth_required',
    },
    {
      name: 'a wrong secret',
      args: () => [
        '-x',
        `http://${net.key.id}:wrong@127.0.0.1:${net.ports.proxy}`,
        `${net.target}/`,
      ],
      status: 407,
      code: 'auth_failed',
    },
    {
      name: 'an unknown parameter',
      args: () => ['-x', net.proxyUrl('-colour-red'), `${net.target}/`],
      status: 400,
      code: 'bad_params',
    },
    {
      name: 'no exit in the country',
      args: () => ['-x', net.proxyUrl('-country-fr'), `${net.target}/`],
      status: 503,
      code: 'no_exit_available',
      retryAfter: true,
    },
    {
      name: 'a loopback target outside the allow-list',
      args: () => ['-x', net.proxyUrl('-country-de'), `http://127.0.0.2:${net.targetPort}/`],
      status: 403,
      code: 'target_forbidden',
    },
    {
      name: 'a target written as a decimal number',
      args: () => ['-p', '-x', net.proxyUrl('-country-de'), `http://2130706434:${net.targetPort}/`],
      status: 403,
      code: 'target_forbidden',
    },
    {
      name: 'an SMTP port',
      args: () => ['-p', '-x', net.proxyUrl('-country-de'), 'http://127.0.0.1:25/'],
      status: 403,
      code: 'target_forbidden',
    },
    {
      name: 'a closed port',
      args: () => ['-x', net.proxyUrl('-country-de'), 'http://127.0.0.1:9/'],
      status: 502,
      code: 'target_unreachable',
    },
  ];
  for (const refusal of refusals) {
    test(`${refusal.name} is refused with ${refusal.code}`, async () => {
      const res = await curl(refusal.args());
      assert.equal(res.status, refusal.status);
      assert.equal(res.headers['x-ipcola-error'], refusal.code);
      assert.match(
        res.headers['proxy-status'] ?? '',
        new RegExp(`^ipcola; error=[a-z_]+; details="${refusal.code}"$`),
      );
      assert.equal('retry-after' in res.headers, refusal.retryAfter === true);
      if (refusal.status === 407)
        assert.equal(res.headers['proxy-authenticate'], 'Basic realm="ipcola"');
      // curl does not print the body of a refused CONNECT; forwarded requests show it.
      if (!refusal.args().includes('-p'))
        assert.match(res.body, new RegExp(`^${refusal.code}: .+\\n$`));
    });
  }

  test('a session whose exit went away fails with session_exit_gone; a new session works', async () => {
    const first = await curl(['-x', net.proxyUrl('-country-de-session-gone1'), `${net.target}/`]);
    assert.equal(first.body, '127.0.0.12');
    await net.stopAgent('127.0.0.12');
    await eventually(
      () => net.server.logs.some((line) => line.msg === 'node down'),
      10_000,
      'the hub to see the node go',
    );
    const gone = await curl(['-x', net.proxyUrl('-country-de-session-gone1'), `${net.target}/`]);
    assert.equal(gone.status, 503);
    assert.equal(gone.headers['x-ipcola-error'], 'session_exit_gone');
    const fresh = await curl(['-x', net.proxyUrl('-country-us-session-fresh1'), `${net.target}/`]);
    assert.equal(fresh.status, 200);
    assert.match(fresh.body, /^127\.0\.0\.1[34]$/);
  });
});
