/**
 * Failed sign-ins per client address, on the proxy (HTTP and SOCKS5) and on the API's
 * log-in (and on a signup retried with an Idempotency-Key, which checks a password too):
 * past AUTH_FAILURE_LIMIT the address gets rate_limited even with the right credentials,
 * and other addresses are not affected. Clients bind distinct loopback
 * addresses so that the server sees each as a different client.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const LIMIT = 5;

describe('guessing addresses are refused after their failed sign-ins', () => {
  let net: ProxyNetwork;
  let email: string;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      AUTH_FAILURE_LIMIT: String(LIMIT),
    });
    email = ((await (await net.api('/v1/me')).json()) as { user: { email: string } }).user.email;
  });
  after(() => net?.close());

  /** The status line and X-IPCola-Error of a CONNECT sent from `from`. */
  const connectFrom = async (from: string, secret: string) => {
    const socket = connect({ port: net.ports.proxy, host: '127.0.0.1', localAddress: from });
    await once(socket, 'connect');
    socket.on('error', () => {});
    const authority = `127.0.0.1:${net.targetPort}`;
    const basic = Buffer.from(`${net.key.id}:${secret}`).toString('base64');
    socket.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`,
    );
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    const head = chunk.toString('latin1');
    return `${head.split(' ')[1]} ${/X-IPCola-Error: (\S+)/.exec(head)?.[1] ?? ''}`.trim();
  };

  const loginFrom = (from: string, password: string, path = '/v1/auth/login') =>
    new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
      const body = JSON.stringify({ email, password });
      const req = request(
        {
          host: '127.0.0.1',
          port: net.ports.api,
          localAddress: from,
          method: 'POST',
          path,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'idempotency-key': 'guess-1',
          },
        },
        async (res) => {
          let text = '';
          for await (const chunk of res) text += chunk;
          const code = (res.statusCode ?? 0) < 300 ? undefined : JSON.parse(text).error?.code;
          resolve({ status: res.statusCode ?? 0, code });
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  test('the proxy refuses an address past its failures, right secret or not; others go on', async () => {
    for (let i = 0; i < LIMIT; i++) {
      assert.equal(await connectFrom('127.0.0.77', `wrong-${i}`), '407 auth_failed');
    }
    assert.equal(await connectFrom('127.0.0.77', 'wrong-again'), '429 rate_limited');
    assert.equal(await connectFrom('127.0.0.77', net.key.secret), '429 rate_limited');
    assert.equal(await connectFrom('127.0.0.78', net.key.secret), '200');

    await assert.rejects(
      net.socks('', '127.0.0.77'),
      /Socks5 proxy rejected connection - NotAllowed/,
    );
  });

  test('log-in refuses an address past its failures, right password or not; others go on', async () => {
    for (let i = 0; i < LIMIT; i++) {
      assert.deepEqual(await loginFrom('127.0.0.79', `wrong password ${i}`), {
        status: 401,
        code: 'unauthorized',
      });
    }
    assert.deepEqual(await loginFrom('127.0.0.79', 'wrong password again'), {
      status: 429,
      code: 'rate_limited',
    });
    assert.deepEqual(await loginFrom('127.0.0.79', 'a long enough password'), {
      status: 429,
      code: 'rate_limited',
    });
    assert.deepEqual(await loginFrom('127.0.0.80', 'a long enough password'), {
      status: 200,
      code: undefined,
    });
  });

  test('a signup retry checks the password like a log-in and is limited like one', async () => {
    const signup = (from: string, password: string) => loginFrom(from, password, '/v1/auth/signup');
    for (let i = 0; i < LIMIT; i++) {
      assert.deepEqual(await signup('127.0.0.81', `wrong password ${i}`), {
        status: 409,
        code: 'email_taken',
      });
    }
    assert.deepEqual(await signup('127.0.0.81', 'wrong password again'), {
      status: 429,
      code: 'rate_limited',
    });
    assert.deepEqual(await signup('127.0.0.81', 'a long enough password'), {
      status: 429,
      code: 'rate_limited',
    });
    // Another address with the right password and a key the account was not made with.
    assert.deepEqual(await signup('127.0.0.82', 'a long enough password'), {
      status: 409,
      code: 'email_taken',
    });
  });
});
