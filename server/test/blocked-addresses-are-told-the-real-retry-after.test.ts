/**
 * An address blocked for its failed sign-ins is told, in `Retry-After`, the seconds the
 * block actually has left: the same number the refusal's text states, on the proxy's
 * CONNECT and forward refusals and on the API's 429 for log-ins. (It used to be a constant
 * 1 s on the proxy, while the body said 300 s, and absent on the API.) Clients bind distinct
 * loopback addresses so that the server sees each as a different client.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const LIMIT = 2;

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: string;
}

describe('blocked addresses are told the real Retry-After', () => {
  let net: ProxyNetwork;
  let email: string;
  before(async () => {
    // No exit needed: every answer here is given before an exit is chosen.
    net = await startProxyNetwork([], { AUTH_FAILURE_LIMIT: String(LIMIT) });
    email = ((await (await net.api('/v1/me')).json()) as { user: { email: string } }).user.email;
  });
  after(() => net?.close());

  /** One HTTP request from `from` to `port`; a CONNECT's answer is read by Node as well. */
  const send = (
    from: string,
    port: number,
    options: { method: string; path: string; headers: Record<string, string | number> },
    body?: string,
  ) =>
    new Promise<Answer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, localAddress: from, ...options });
      const settle = async (res: import('node:http').IncomingMessage) => {
        let text = '';
        for await (const chunk of res) text += chunk;
        const retryAfter = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, retryAfter, body: text });
      };
      req.on('response', settle);
      // Node hands a CONNECT's answer to 'connect', whatever its status.
      req.on('connect', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body: '' });
      });
      req.on('error', reject);
      req.end(body);
    });

  const proxyAuth = (secret: string) =>
    `Basic ${Buffer.from(`${net.key.id}:${secret}`).toString('base64')}`;
  const connectFrom = (from: string, secret: string) =>
    send(from, net.ports.proxy, {
      method: 'CONNECT',
      path: `127.0.0.1:${net.targetPort}`,
      headers: { 'proxy-authorization': proxyAuth(secret) },
    });
  const forwardFrom = (from: string, secret: string) =>
    send(from, net.ports.proxy, {
      method: 'GET',
      path: `${net.target}/`,
      headers: { 'proxy-authorization': proxyAuth(secret) },
    });
  const loginFrom = (from: string, password: string) => {
    const body = JSON.stringify({ email, password });
    return send(
      from,
      net.ports.api,
      {
        method: 'POST',
        path: '/v1/auth/login',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      body,
    );
  };

  /** Retry-After as a number of seconds, checked to be a whole number above the old 1. */
  const secondsOf = (answer: Answer): number => {
    assert.match(answer.retryAfter ?? '', /^\d+$/, `Retry-After: ${answer.retryAfter}`);
    const seconds = Number(answer.retryAfter);
    assert.ok(seconds > 1, `Retry-After ${seconds} is the block's time left, not a constant 1`);
    return seconds;
  };

  test('the proxy refuses with Retry-After equal to the seconds the refusal states', async () => {
    for (let i = 0; i < LIMIT; i++) {
      assert.equal((await connectFrom('127.0.0.91', `wrong-${i}`)).status, 407);
    }
    // The failure past the limit starts the block and is refused with it.
    const startedAt = performance.now();
    const refused = await forwardFrom('127.0.0.91', 'wrong-again');
    assert.equal(refused.status, 429);
    const seconds = secondsOf(refused);
    assert.match(refused.body, new RegExp(`refused for ${seconds} s\\n$`));

    // A CONNECT later, with the right secret: the time left, which has not grown.
    const later = await connectFrom('127.0.0.91', net.key.secret);
    assert.equal(later.status, 429);
    const left = secondsOf(later);
    const elapsed = (performance.now() - startedAt) / 1000;
    assert.ok(left <= seconds && left >= seconds - Math.ceil(elapsed) - 1, `${left} of ${seconds}`);
  });

  test("the API's 429 for log-ins carries Retry-After equal to the seconds its message states", async () => {
    for (let i = 0; i < LIMIT; i++) {
      assert.equal((await loginFrom('127.0.0.92', `wrong password ${i}`)).status, 401);
    }
    // The failure past the limit, then the right password while blocked.
    for (const password of ['wrong password again', 'a long enough password']) {
      const refused = await loginFrom('127.0.0.92', password);
      assert.equal(refused.status, 429);
      const seconds = secondsOf(refused);
      const { error } = JSON.parse(refused.body) as { error: { code: string; message: string } };
      assert.equal(error.code, 'rate_limited');
      assert.match(error.message, new RegExp(`try again in ${seconds} s$`));
    }
  });
});
