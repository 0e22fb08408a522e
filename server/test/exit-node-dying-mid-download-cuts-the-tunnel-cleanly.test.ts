import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

let net: ProxyNetwork;
before(async () => {
  net = await startProxyNetwork([
    { ip: '127.0.0.12', country: 'de' },
    { ip: '127.0.0.13', country: 'us' },
  ]);
});
after(() => net.close());

test('an exit node killed mid-download ends the client tunnel, and the gateway keeps serving', async () => {
  const socket = connect(net.ports.proxy, '127.0.0.1');
  socket.on('error', () => {}); // the cut may arrive as a reset
  const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
  socket.write(
    `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${net.targetPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
  );
  let received = 0;
  let established = false;
  let sentGet = false;
  const flowing = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (!established && chunk.toString('latin1').startsWith('HTTP/1.1 200 ')) established = true;
      if (established && !sentGet) {
        sentGet = true;
        socket.write('GET /drip HTTP/1.1\r\nHost: t\r\n\r\n');
      }
      if (received > 512 * 1024) resolve();
    });
  });
  await flowing;
  // A reset, not a clean end: a truncated download must never look complete.
  const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
  await net.stopAgent('127.0.0.12', 'SIGKILL');
  const hadError = await closed; // long before any idle timeout: the gateway ends the tunnel itself
  assert.equal(hadError, true, 'the client sees the cut as an error');
  assert.ok(established);

  await eventually(
    () => net.server.logs.some((line) => line.msg === 'node down'),
    10_000,
    'node down',
  );
  const res = await fetch(`http://127.0.0.1:${net.ports.api}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(net.server.child.exitCode, null, 'the gateway is still running');

  // Another exit still carries new traffic.
  const other = connect(net.ports.proxy, '127.0.0.1');
  const usAuth = Buffer.from(`${net.key.id}-country-us:${net.key.secret}`).toString('base64');
  other.write(
    `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: Basic ${usAuth}\r\nConnection: close\r\n\r\n`,
  );
  let answer = '';
  for await (const chunk of other) answer += chunk;
  assert.match(answer, /^HTTP\/1\.1 200 [\s\S]*127\.0\.0\.13$/);
});
