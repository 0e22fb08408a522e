/**
 * GET /metrics on the real server: after traffic over each protocol and a few refusals,
 * the Prometheus counters and gauges say what happened, the byte counters equal the
 * metered usage, no label names a key or an address, and METRICS_TOKEN guards it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';
import { serverEnv, startServer } from './support/server-process.ts';

/** The value of one sample line, e.g. `ipcola_proxy_connections_total{protocol="connect"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics count what the proxy carries and refuses', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      USAGE_FLUSH_INTERVAL_MS: '200',
    });
  });
  after(() => net?.close());

  test('connections, refusals, bytes, selection time and online exits', async () => {
    const authority = `127.0.0.1:${net.targetPort}`;
    const basic = (secret: string) =>
      Buffer.from(`${net.key.id}-country-de:${secret}`).toString('base64');
    const tunnel = await exchangeText(
      net.ports.proxy,
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic(net.key.secret)}\r\n\r\n` +
        `GET / HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(tunnel, /^HTTP\/1\.1 200 /);
    const forwarded = await exchangeText(
      net.ports.proxy,
      `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic(net.key.secret)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(forwarded, /^HTTP\/1\.1 200 /);
    const wrong = await exchangeText(
      net.ports.proxy,
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic('wrong')}\r\n\r\n`,
    );
    assert.match(wrong, /^HTTP\/1\.1 407 /);
    const unmatched = await exchangeText(
      net.ports.proxy,
      `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${Buffer.from(`${net.key.id}-country-fr:${net.key.secret}`).toString('base64')}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(unmatched, /^HTTP\/1\.1 503 /);
    const socks = await net.socks('-country-de');
    socks.socket.end(`GET / HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
    socks.socket.resume();
    await once(socks.socket, 'close');

    // Every byte is in the metrics once the usage API has it all (both count at recording).
    let usage = { bytes_up: 0, bytes_down: 0, requests: 0 };
    await eventually(
      async () => {
        usage = ((await (await net.api('/v1/usage')).json()) as { totals: typeof usage }).totals;
        return usage.requests === 3;
      },
      10_000,
      'three metered connections',
    );
    const answer = await fetch(`http://127.0.0.1:${net.ports.api}/metrics`);
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await answer.text();

    assert.equal(sample(text, 'ipcola_proxy_connections_total{protocol="connect"}'), 1);
    assert.equal(sample(text, 'ipcola_proxy_connections_total{protocol="http"}'), 1);
    assert.equal(sample(text, 'ipcola_proxy_connections_total{protocol="socks5"}'), 1);
    assert.equal(
      sample(text, 'ipcola_proxy_refusals_total{protocol="connect",code="auth_failed"}'),
      1,
    );
    assert.equal(
      sample(text, 'ipcola_proxy_refusals_total{protocol="http",code="no_exit_available"}'),
      1,
    );
    assert.equal(sample(text, 'ipcola_proxy_bytes_total{direction="up"}'), usage.bytes_up);
    assert.equal(sample(text, 'ipcola_proxy_bytes_total{direction="down"}'), usage.bytes_down);
    assert.equal(sample(text, 'ipcola_exit_selection_seconds_count'), 4);
    assert.equal(sample(text, 'ipcola_exits_online'), 1);
    assert.equal(sample(text, 'ipcola_nodes_online{tunnel="v2"}'), 1);
    assert.equal(sample(text, 'ipcola_nodes_online{tunnel="v1"}'), 0);
    assert.equal(sample(text, 'ipcola_tunnels_open'), 0);
    assert.ok((sample(text, 'ipcola_process_resident_memory_bytes') ?? 0) > 0);
    assert.ok(!text.includes(net.key.id), 'no label names a key');
    assert.ok(!text.includes('127.0.0.12'), 'no label names an exit IP');
  });
});

describe('METRICS_TOKEN guards /metrics', () => {
  test('without the token the answer is 403, with it the metrics', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-metrics-'));
    const token = 'a-metrics-token-of-enough-length-0123456789';
    const server = await startServer(serverEnv({ DATA_DIR: dataDir, METRICS_TOKEN: token }));
    try {
      const url = `http://127.0.0.1:${server.ports.api}/metrics`;
      const anonymous = await fetch(url);
      assert.equal(anonymous.status, 403);
      assert.equal(
        ((await anonymous.json()) as { error: { code: string } }).error.code,
        'forbidden',
      );
      const wrong = await fetch(url, { headers: { authorization: `Bearer ${token.slice(1)}x` } });
      assert.equal(wrong.status, 403);
      const right = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(right.status, 200);
      assert.match(await right.text(), /^# HELP /m);
    } finally {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
