/**
 * Suppliers' existing proxies as exits, end to end: the real server process, a SOCKS5
 * upstream leaving from 127.0.0.16 and an HTTP upstream leaving from 127.0.0.15 (each a
 * maintained library, see support/upstream-proxies.ts), registered through the API, and
 * curl as the customer. The local target answers with the address it was reached from.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import {
  startHttpUpstream,
  startSocks5Upstream,
  type UpstreamProxyServer,
} from './support/upstream-proxies.ts';

const run = promisify(execFile);

const SOCKS_USER = { username: 'supplier', password: 's0cks pass:with@odd/chars' };
const HTTP_USER = { username: 'supplier', password: 'http-pass-123' };

interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** curl as a customer runs it; -i so that refusals' headers can be checked. */
async function curl(args: string[]): Promise<CurlResult> {
  const { stdout } = await run('curl', ['-sS', '-i', '--max-time', '15', ...args]).catch(
    (error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }),
  );
  // With -p (CONNECT) curl prints the proxy's answer first; the last response is the one that counts.
  const last = stdout.split(/\r\n\r\n(?=HTTP\/)/).at(-1) ?? '';
  const [head = '', ...rest] = last.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

/** A CONNECT written by hand, so that the target text reaches the gateway exactly as given. */
async function rawConnect(
  port: number,
  authority: string,
  proxyAuthorization: string,
): Promise<{ status: number; code: string | undefined }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
      `Proxy-Authorization: ${proxyAuthorization}\r\n\r\n`,
  );
  let text = '';
  for await (const chunk of socket) {
    text += chunk;
    if (text.includes('\r\n\r\n')) break;
  }
  socket.destroy();
  return {
    status: Number(text.split(' ')[1]),
    code: /\r\nX-IPCola-Error: ([a-z_]+)/i.exec(text)?.[1],
  };
}

function proxyUrl(
  scheme: 'socks5' | 'http',
  user: { username: string; password: string },
  port: number,
) {
  return `${scheme}://${encodeURIComponent(user.username)}:${encodeURIComponent(user.password)}@127.0.0.1:${port}`;
}

describe('upstream proxies registered as exits carry customer traffic', () => {
  let net: ProxyNetwork;
  let socksUpstream: UpstreamProxyServer;
  let httpUpstream: UpstreamProxyServer;
  let flakyUpstream: UpstreamProxyServer;

  const register = async (
    upstream: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ) => {
    const res = await net.api('/v1/nodes', {
      method: 'POST',
      body: JSON.stringify({ ...extra, upstream }),
    });
    return { status: res.status, text: await res.text() };
  };
  const registerOk = async (upstream: Record<string, unknown>) => {
    const answer = await register(upstream);
    assert.equal(answer.status, 201, answer.text);
    return JSON.parse(answer.text) as { id: string; upstream: { url: string } };
  };
  const socks5Curl = (params: string, url: string) =>
    curl([
      '--socks5-hostname',
      `127.0.0.1:${net.ports.socks}`,
      '-U',
      `${net.key.id}${params}:${net.key.secret}`,
      url,
    ]);
  const basic = (params: string) =>
    `Basic ${Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64')}`;

  before(async () => {
    socksUpstream = await startSocks5Upstream(SOCKS_USER, '127.0.0.16');
    httpUpstream = await startHttpUpstream(HTTP_USER, '127.0.0.15');
    flakyUpstream = await startSocks5Upstream(SOCKS_USER, '127.0.0.17');
    net = await startProxyNetwork([], {
      // The local target and the upstreams live on loopback, which the policy refuses.
      UPSTREAM_ALLOW_TARGETS: '127.0.0.1/32,::1/128',
      UPSTREAM_ALLOW_PROXIES: '127.0.0.1/32',
      UPSTREAM_PROBE_INTERVAL_MS: '200',
    });
  });
  after(async () => {
    await net?.close();
    await Promise.all([socksUpstream, httpUpstream, flakyUpstream].map((u) => u?.close()));
  });

  test('registration answers with the node and its proxy, never a token or the password', async () => {
    const answer = await register(
      {
        url: proxyUrl('socks5', SOCKS_USER, socksUpstream.port),
        exit_ips: ['127.0.0.16'],
        country: 'nl',
        city: 'amsterdam',
      },
      { name: 'supplier socks' },
    );
    assert.equal(answer.status, 201, answer.text);
    const node = JSON.parse(answer.text);
    assert.deepEqual(Object.keys(node).sort(), ['created_at', 'id', 'name', 'type', 'upstream']);
    assert.equal(node.type, 'datacenter');
    assert.deepEqual(node.upstream, {
      url: `socks5://supplier@127.0.0.1:${socksUpstream.port}`,
      exit_ips: ['127.0.0.16'],
      country: 'nl',
      city: 'amsterdam',
    });
    assert.ok(!answer.text.includes('s0cks'), 'the password is not in the answer');

    await registerOk({
      url: proxyUrl('http', HTTP_USER, httpUpstream.port),
      exit_ips: ['127.0.0.15'],
      country: 'jp',
    });
    const regions = (await (await net.api('/v1/regions')).json()) as {
      data: Array<{ country: string }>;
    };
    assert.deepEqual(regions.data, [
      { country: 'jp', city: null, type: 'datacenter', exits: 1, healthy: 1, asns: [] },
      { country: 'nl', city: 'amsterdam', type: 'datacenter', exits: 1, healthy: 1, asns: [] },
    ]);
  });

  test('HTTP forwarding, CONNECT and SOCKS5 leave through the SOCKS5 upstream', async () => {
    const forwarded = await curl(['-x', net.proxyUrl('-country-nl'), `${net.target}/`]);
    assert.equal(forwarded.status, 200, forwarded.body);
    assert.equal(forwarded.body, '127.0.0.16');
    assert.equal(forwarded.headers['x-ipcola-exit-country'], 'nl');
    const tunnelled = await curl(['-p', '-x', net.proxyUrl('-country-nl'), `${net.target}/`]);
    assert.equal(tunnelled.status, 200);
    assert.equal(tunnelled.body, '127.0.0.16');
    const socks = await socks5Curl('-country-nl-city-amsterdam', `${net.target}/`);
    assert.equal(socks.body, '127.0.0.16');
  });

  test('HTTP forwarding, CONNECT and SOCKS5 leave through the HTTP upstream', async () => {
    const forwarded = await curl(['-x', net.proxyUrl('-country-jp'), `${net.target}/`]);
    assert.equal(forwarded.status, 200, forwarded.body);
    assert.equal(forwarded.body, '127.0.0.15');
    const tunnelled = await curl(['-p', '-x', net.proxyUrl('-country-jp'), `${net.target}/`]);
    assert.equal(tunnelled.body, '127.0.0.15');
    const socks = await socks5Curl('-country-jp', `${net.target}/`);
    assert.equal(socks.body, '127.0.0.15');
  });

  test('the upstream is asked for the checked address, never the name the customer gave', async () => {
    const named = `http://localhost:${net.targetPort}/`;
    const before = [socksUpstream.destinations.length, httpUpstream.destinations.length];
    assert.equal((await socks5Curl('-country-nl', named)).body, '127.0.0.16');
    assert.equal((await curl(['-p', '-x', net.proxyUrl('-country-jp'), named])).body, '127.0.0.15');
    assert.deepEqual(socksUpstream.destinations.slice(before[0]), [`127.0.0.1:${net.targetPort}`]);
    assert.deepEqual(httpUpstream.destinations.slice(before[1]), [`127.0.0.1:${net.targetPort}`]);
  });

  test('targets the exit policy refuses get target_forbidden and never reach an upstream', async () => {
    const seen = () => socksUpstream.destinations.length + httpUpstream.destinations.length;
    const before = seen();
    for (const country of ['nl', 'jp']) {
      for (const authority of [
        '127.0.0.2:80', // loopback outside UPSTREAM_ALLOW_TARGETS
        '2130706434:80', // the same address spelt as a number
        '10.1.2.3:443', // private
        '169.254.169.254:80', // cloud metadata
        `127.0.0.1:25`, // SMTP, refused even for allowed addresses
      ]) {
        const refused = await rawConnect(net.ports.proxy, authority, basic(`-country-${country}`));
        assert.deepEqual(refused, { status: 403, code: 'target_forbidden' }, authority);
      }
      const forwarded = await curl(['-x', net.proxyUrl(`-country-${country}`), 'http://10.0.0.1/']);
      assert.equal(forwarded.status, 403);
      assert.equal(forwarded.headers['x-ipcola-error'], 'target_forbidden');
    }
    assert.equal(seen(), before, 'no upstream was asked for a refused target');
  });

  test('a target that refuses the upstream: target_unreachable when the proxy says so', async () => {
    // A port nothing listens on: bound, then closed.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    const refused = `http://127.0.0.1:${port}/`;
    // SOCKS5 answers REP 0x05 (connection refused).
    const viaSocks = await curl(['-p', '-x', net.proxyUrl('-country-nl'), refused]);
    assert.equal(viaSocks.status, 502);
    assert.equal(viaSocks.headers['x-ipcola-error'], 'target_unreachable');
    // proxy-chain hangs up on a failed CONNECT without an answer: that cannot be told
    // from the proxy itself failing, so it counts against the exit (retryable).
    const viaHttp = await curl(['-p', '-x', net.proxyUrl('-country-jp'), refused]);
    assert.equal(viaHttp.status, 502);
    assert.equal(viaHttp.headers['x-ipcola-error'], 'exit_failed');
  });

  test('wrong upstream credentials make the node fail the stream with exit_failed', async () => {
    await registerOk({
      url: proxyUrl('socks5', { ...SOCKS_USER, password: 'wrong' }, socksUpstream.port),
      exit_ips: ['127.0.0.16'],
      country: 'fr',
    });
    await registerOk({
      url: proxyUrl('http', { ...HTTP_USER, password: 'wrong' }, httpUpstream.port),
      exit_ips: ['127.0.0.15'],
      country: 'it',
    });
    for (const country of ['fr', 'it']) {
      const res = await curl(['-p', '-x', net.proxyUrl(`-country-${country}`), `${net.target}/`]);
      assert.equal(res.status, 502, country);
      assert.equal(res.headers['x-ipcola-error'], 'exit_failed');
      assert.equal(res.headers['retry-after'], '1');
    }
  });

  test('a sticky session stays on one upstream exit while others spread', async () => {
    for (const [scheme, user, upstream, ip] of [
      ['socks5', SOCKS_USER, socksUpstream, '127.0.0.16'],
      ['http', HTTP_USER, httpUpstream, '127.0.0.15'],
    ] as const) {
      await registerOk({
        url: proxyUrl(scheme, user, upstream.port),
        exit_ips: [ip],
        country: 'us',
      });
    }
    const seen = new Set<string>();
    for (let session = 0; session < 40 && seen.size < 2; session++) {
      const first = await curl([
        '-x',
        net.proxyUrl(`-country-us-session-s${session}`),
        `${net.target}/`,
      ]);
      assert.equal(first.status, 200);
      assert.equal(first.headers['x-ipcola-session'], `s${session}`);
      for (let again = 0; again < 3; again++) {
        const next = await curl([
          '-p',
          '-x',
          net.proxyUrl(`-country-us-session-s${session}`),
          `${net.target}/`,
        ]);
        assert.equal(next.body, first.body, `session s${session} moved`);
      }
      seen.add(first.body);
    }
    assert.deepEqual([...seen].sort(), ['127.0.0.15', '127.0.0.16'], 'sessions spread over both');
  });

  test('an upstream that stops accepting connections leaves the index and comes back', async () => {
    await registerOk({
      url: proxyUrl('socks5', SOCKS_USER, flakyUpstream.port),
      exit_ips: ['127.0.0.17'],
      country: 'se',
    });
    const through = () => curl(['-x', net.proxyUrl('-country-se'), `${net.target}/`]);
    assert.equal((await through()).body, '127.0.0.17');

    await flakyUpstream.stop();
    let last: CurlResult | undefined;
    await eventually(
      async () => {
        last = await through();
        return last.headers['x-ipcola-error'] === 'no_exit_available';
      },
      10_000,
      'the probe to take the dead upstream out',
    );
    assert.equal(last?.status, 503);
    const regions = (await (await net.api('/v1/regions')).json()) as {
      data: Array<{ country: string }>;
    };
    assert.ok(!regions.data.some((region: { country: string }) => region.country === 'se'));

    await flakyUpstream.restart();
    await eventually(
      async () => (await through()).body === '127.0.0.17',
      10_000,
      'the probe to put the upstream back',
    );
  });

  test('bad upstream registrations are refused with a code and the field they are about', async () => {
    const base = {
      url: proxyUrl('socks5', SOCKS_USER, socksUpstream.port),
      exit_ips: ['127.0.0.16'],
      country: 'nl',
    };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ url: 'ftp://u:p@127.0.0.1:21' }, /upstream\.url scheme "ftp:" is not supported/],
      [{ url: 'https://u:p@127.0.0.1:8443' }, /scheme "https:" is not supported/],
      [{ url: 'socks4://127.0.0.1:1080' }, /scheme "socks4:" is not supported/],
      [{ url: 'socks5://u:p@127.0.0.1' }, /upstream\.url must name the port/],
      [{ url: 'http://u:p@127.0.0.1' }, /upstream\.url must name the port/],
      [{ url: 'http://u:p@127.0.0.1:3128/path' }, /no path/],
      [{ url: 'http://u:p@127.0.0.1:3128?x=1' }, /no path, query or fragment/],
      [{ url: 'socks5://u:p@127.0.0.1:0' }, /port 0 is out of range/],
      [{ url: 'socks5://u@127.0.0.1:1080' }, /needs a password/],
      [{ url: 'socks5://:p@127.0.0.1:1080' }, /password but no user name/],
      [{ url: 'not a url' }, /is not a URL/],
      [
        { url: 'socks5://u:p@10.0.0.1:1080' },
        /not allowed as an upstream proxy: 10\.0\.0\.1 is a private/,
      ],
      [{ url: 'socks5://u:p@169.254.169.254:1080' }, /not allowed as an upstream proxy/],
      [{ url: 'http://u:p@127.0.0.1:25' }, /SMTP/],
      [{ exit_ips: ['not-an-ip'] }, /upstream\.exit_ips\[0\] is not an IP address/],
      [{ exit_ips: ['127.0.0.16', '127.0.0.016'] }, /exit_ips\[1\] is not an IP address/],
      [{ exit_ips: ['::1', '0:0::1'] }, /exit_ips\[1\] is a duplicate/],
      [{ exit_ips: [] }, /upstream\.exit_ips must not be empty/],
      [{ exit_ips: '127.0.0.16' }, /upstream\.exit_ips must be an array/],
      [{ country: undefined }, /upstream\.country is required/],
      [{ country: 'NL' }, /upstream\.country has characters that are not allowed/],
      [{ country: 'uk' }, /assigned ISO 3166-1/],
      [{ city: 'New York' }, /upstream\.city has characters/],
      [{ asn: 0 }, /upstream\.asn must be at least 1/],
      [{ password: 'x' }, /unknown field "upstream\.password"/],
    ];
    for (const [change, message] of cases) {
      const body = JSON.parse(JSON.stringify({ ...base, ...change }));
      const answer = await register(body);
      assert.equal(answer.status, 400, `${JSON.stringify(change)}: ${answer.text}`);
      const { error } = JSON.parse(answer.text);
      assert.equal(error.code, 'invalid_request');
      assert.match(error.message, message, JSON.stringify(change));
      assert.ok(!answer.text.includes(SOCKS_USER.password), 'no password echoed');
    }
    const notAnObject = await register(
      'socks5://u:p@127.0.0.1:1080' as unknown as Record<string, unknown>,
    );
    assert.equal(notAnObject.status, 400);
  });
});
