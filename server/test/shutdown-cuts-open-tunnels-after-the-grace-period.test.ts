import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { startProxyNetwork } from './support/proxy-network.ts';

test('SIGTERM with a busy CONNECT tunnel open exits 0 once the grace period is over', async () => {
  const net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
    SHUTDOWN_GRACE_MS: '500',
  });
  try {
    const socket = connect(net.ports.proxy, '127.0.0.1');
    socket.on('error', () => {});
    const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
    socket.write(
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    );
    await new Promise<void>((resolve) => {
      let sent = false;
      let received = 0;
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (!sent) {
          sent = true;
          socket.write('GET /drip HTTP/1.1\r\nHost: t\r\n\r\n');
        }
        if (received > 256 * 1024) resolve();
      });
    });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    const signalled = Date.now();
    assert.equal(await net.server.stop('SIGTERM'), 0);
    const took = Date.now() - signalled;
    await closed;
    // The grace is 500 ms per listener; a tunnel must not hold shutdown until the idle timeout.
    assert.ok(took < 5_000, `shutdown took ${took} ms`);
  } finally {
    await net.close();
  }
});
