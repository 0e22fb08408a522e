/**
 * A request the gateway refuses is never billed, whatever the path and wherever the
 * refusal comes from (the gateway itself, or the exit: a forbidden or unreachable
 * target). Only the one request that succeeds shows up in usage, to the byte.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SocksClient } from 'socks';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/** Sends `request` on a new connection and reads until the gateway closes; both ways counted. */
async function exchange(port: number, request: string): Promise<{ text: string; moved: number }> {
  const socket: Socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  socket.write(request);
  await new Promise((resolve) => socket.once('close', resolve));
  return { text, moved: socket.bytesRead + socket.bytesWritten };
}

describe('refused requests are never billed on any path', () => {
  let net: ProxyNetwork;
  let closedPort: number;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      USAGE_FLUSH_INTERVAL_MS: '300',
    });
    // A port that was just free: connecting to it is refused (target_unreachable).
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
  });
  after(() => net?.close());

  test('forward, CONNECT and SOCKS5 refusals cost nothing; the one success costs its bytes', async () => {
    const basic = (params: string) =>
      Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64');
    const forbidden = '127.0.0.2:80'; // outside the agent's --allow-target
    const unreachable = `127.0.0.1:${closedPort}`;
    const refusals: Array<[string, RegExp]> = [];
    for (const target of [forbidden, unreachable]) {
      refusals.push([
        `GET http://${target}/ HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: Basic ${basic('-country-de')}\r\nConnection: close\r\n\r\n`,
        /^HTTP\/1\.1 (403|502) /,
      ]);
      refusals.push([
        `POST http://${target}/ HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: Basic ${basic('-country-de')}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
        /^HTTP\/1\.1 (403|502) /,
      ]);
      refusals.push([
        `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: Basic ${basic('-country-de')}\r\n\r\n`,
        /^HTTP\/1\.1 (403|502) /,
      ]);
    }
    // Refused by the gateway itself after admission: no exit in that country.
    refusals.push([
      `GET http://127.0.0.1:${net.targetPort}/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${basic('-country-fr')}\r\nConnection: close\r\n\r\n`,
      /^HTTP\/1\.1 503 /,
    ]);
    for (const [request, expected] of refusals) {
      const { text } = await exchange(net.ports.proxy, request);
      assert.match(text, expected, request.split('\r\n')[0]);
    }
    for (const [host, port] of [
      ['127.0.0.2', 80],
      ['127.0.0.1', closedPort],
    ] as const) {
      await assert.rejects(
        SocksClient.createConnection({
          proxy: {
            host: '127.0.0.1',
            port: net.ports.socks,
            type: 5,
            userId: `${net.key.id}-country-de`,
            password: net.key.secret,
          },
          command: 'connect',
          destination: { host, port },
          timeout: 10_000,
        }),
      );
    }

    // One request that succeeds, counted by its client socket.
    const success = await exchange(
      net.ports.proxy,
      `GET http://127.0.0.1:${net.targetPort}/bytes/1000 HTTP/1.1\r\nHost: 127.0.0.1:${net.targetPort}\r\nProxy-Authorization: Basic ${basic('-country-de')}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(success.text, /^HTTP\/1\.1 200 /);

    let total = 0;
    let requests = 0;
    await eventually(
      async () => {
        const report = (await (await net.api('/v1/usage')).json()) as {
          totals: { bytes_up: number; bytes_down: number; requests: number };
        };
        total = report.totals.bytes_up + report.totals.bytes_down;
        requests = report.totals.requests;
        return total >= success.moved;
      },
      10_000,
      'the successful request to be flushed',
    ).catch(() => assert.fail(`usage ${total}, the success moved ${success.moved}`));
    assert.equal(total, success.moved, 'only the successful request is billed');
    assert.equal(requests, 1);
  });
});
