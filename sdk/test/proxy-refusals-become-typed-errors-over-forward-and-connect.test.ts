/**
 * Every gateway refusal a client can provoke reaches it as the typed error of its code, with
 * the status and Retry-After, whether the request was forwarded (an http target) or
 * tunnelled with CONNECT (an https target, where undici alone says only "fetch failed");
 * and the refusals a new exit may cure are retried, as the server's own count shows.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import axios from 'axios';
import got from 'got';
import { fetch as undiciFetch } from 'undici';
import {
  AuthFailedError,
  BadParamsError,
  type IPColaError,
  IpNotAllowedError,
  NoExitAvailableError,
  QuotaExhaustedError,
  RateLimitedError,
  TargetForbiddenError,
  TargetUnreachableError,
} from '../src/errors.ts';
import { gatewayDispatcher } from '../src/proxy/dispatcher.ts';
import { createProxyHelpers, gatewayRefusal, type ProxyHelpers } from '../src/proxy/index.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const NO_RETRY = { retries: 0 };

describe('gateway refusals become typed errors over forward and CONNECT', () => {
  let network: ProxyNetwork;
  let ipc: ProxyHelpers;
  const targets = () =>
    [
      ['forward', network.httpTarget],
      ['CONNECT', network.httpsTarget],
    ] as const;

  before(async () => {
    network = await startProxyNetwork();
    ipc = network.helpers();
  });
  after(async () => {
    await ipc?.close();
    await network?.close();
  });

  async function refusal(
    attempt: () => Promise<unknown>,
    type: typeof AuthFailedError,
    status: number,
  ): Promise<IPColaError> {
    const error = await attempt().then(
      () => assert.fail('the gateway let the request through'),
      (thrown: unknown) => thrown,
    );
    assert.ok(error instanceof type, `a ${type.name}, not ${String(error)}`);
    assert.equal(error.status, status);
    return error;
  }

  it('a wrong secret is AuthFailedError (407)', async () => {
    const wrong = createProxyHelpers(network.config(`${network.key.id}.${'x'.repeat(43)}`));
    try {
      for (const [, target] of targets()) {
        const error = await refusal(
          () => wrong.fetch(target, { country: 'de' }),
          AuthFailedError,
          407,
        );
        assert.equal(error.code, 'auth_failed');
      }
    } finally {
      await wrong.close();
    }
  });

  it('a raw username the gateway cannot parse is BadParamsError (400), inside fetch failed', async () => {
    const dispatcher = gatewayDispatcher(`http://127.0.0.1:${network.ports.proxy}`, {
      username: `${network.key.id}-country-xx`,
      password: network.key.secret,
    });
    try {
      for (const [, target] of targets()) {
        const error = await undiciFetch(target, { dispatcher }).then(
          () => assert.fail('the gateway let the request through'),
          (thrown: unknown) => thrown,
        );
        assert.ok(error instanceof TypeError, 'what fetch throws for any failure');
        // undici's fetch wraps what the dispatcher failed with; gatewayRefusal digs it out.
        const typed = gatewayRefusal(error);
        assert.ok(typed instanceof BadParamsError, `BadParamsError, not ${String(typed)}`);
        assert.equal(typed.status, 400);
      }
    } finally {
      await dispatcher.close();
    }
  });

  it("Node's own fetch with the dispatcher fails with the typed refusal as its cause", async () => {
    const dispatcher = ipc.dispatcher({ country: 'fr' });
    try {
      for (const [how, target] of targets()) {
        const error = await fetch(target, { dispatcher } as unknown as RequestInit).then(
          () => assert.fail('the gateway let the request through'),
          (thrown: unknown) => thrown,
        );
        assert.ok(
          gatewayRefusal(error) instanceof NoExitAvailableError,
          `${how}: ${String(error)}`,
        );
      }
    } finally {
      await dispatcher.close();
    }
  });

  it('a key with no cap left is QuotaExhaustedError (402)', async () => {
    const capped = createProxyHelpers(
      network.config(await network.newKey({ monthly_byte_cap: 0 })),
    );
    try {
      for (const [, target] of targets()) {
        await refusal(() => capped.fetch(target), QuotaExhaustedError, 402);
      }
    } finally {
      await capped.close();
    }
  });

  it('a country without exits is NoExitAvailableError (503) with Retry-After', async () => {
    for (const [, target] of targets()) {
      const error = await refusal(
        () => ipc.fetch(target, { country: 'fr', retry: NO_RETRY }),
        NoExitAvailableError,
        503,
      );
      assert.equal(error.retryAfter, 1);
      assert.match(error.message, /127\.0\.0\.1:\d+/);
    }
  });

  it("a target the exits' policy refuses is TargetForbiddenError (403)", async () => {
    for (const [, target] of targets()) {
      // 127.0.0.2: loopback, and not among the agents' --allow-target addresses.
      const forbidden = target.replace('127.0.0.1', '127.0.0.2');
      await refusal(() => ipc.fetch(forbidden, { country: 'de' }), TargetForbiddenError, 403);
    }
  });

  it('a key used from outside its allow-list is IpNotAllowedError (403)', async () => {
    const elsewhere = createProxyHelpers(
      network.config(await network.newKey({ client_allowlist: ['192.0.2.0/24'] })),
    );
    try {
      for (const [, target] of targets()) {
        await refusal(() => elsewhere.fetch(target), IpNotAllowedError, 403);
      }
    } finally {
      await elsewhere.close();
    }
  });

  it('a key over its concurrency is RateLimitedError (429)', async () => {
    const apiKey = await network.newKey({ max_concurrency: 1 });
    const [id, secret] = apiKey.split('.') as [string, string];
    // One tunnel held open takes the key's one connection.
    const held = connect(network.ports.proxy, '127.0.0.1');
    held.on('error', () => {});
    await once(held, 'connect');
    const authority = new URL(network.httpTarget).host;
    const basic = Buffer.from(`${id}-country-de:${secret}`).toString('base64');
    held.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`,
    );
    const [answer] = (await once(held, 'data')) as [Buffer];
    assert.match(answer.toString('latin1'), /^HTTP\/1\.1 200/);
    const limited = createProxyHelpers(network.config(apiKey));
    try {
      for (const [, target] of targets()) {
        await refusal(() => limited.fetch(target, { country: 'de' }), RateLimitedError, 429);
      }
    } finally {
      held.destroy();
      await limited.close();
    }
  });

  it('a target that refuses the connection is TargetUnreachableError (502), not retried', async () => {
    // A port just freed on the one address the exits may reach: nothing listens there.
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as { port: number };
    await new Promise((resolve) => closed.close(resolve));
    const before = await network.refusals('target_unreachable');
    for (const scheme of ['http', 'https']) {
      await refusal(
        () => ipc.fetch(`${scheme}://127.0.0.1:${port}/`, { country: 'de' }),
        TargetUnreachableError,
        502,
      );
    }
    assert.equal(await network.refusals('target_unreachable'), before + 2);
  });

  it('axios and got errors carry the refusal, read by gatewayRefusal', async () => {
    const options = { country: 'fr' } as const;
    const httpAgent = await ipc.httpAgent(options);
    const httpsAgent = await ipc.httpsAgent(options);
    for (const [, target] of targets()) {
      const fromAxios = await axios
        .get(target, { httpAgent, httpsAgent, proxy: false })
        .catch((error: unknown) => error);
      assert.ok(gatewayRefusal(fromAxios) instanceof NoExitAvailableError);
      const fromGot = await got(target, { agent: { http: httpAgent, https: httpsAgent } }).catch(
        (error: unknown) => error,
      );
      const typed = gatewayRefusal(fromGot);
      assert.ok(typed instanceof NoExitAvailableError, String(typed));
      assert.equal(typed.status, 503);
    }
  });

  it('no_exit_available is retried with back-off, each attempt reaching the server', async () => {
    for (const [how, target] of targets()) {
      const before = await network.refusals('no_exit_available');
      const error = await refusal(
        () =>
          ipc.fetch(target, {
            country: 'fr',
            retry: { retries: 2, backoffMs: 10, maxBackoffMs: 50 },
          }),
        NoExitAvailableError,
        503,
      );
      assert.match(error.message, /after 3 attempts/);
      assert.equal(await network.refusals('no_exit_available'), before + 3, how);
    }
  });

  it('a session is never retried on another exit', async () => {
    const before = await network.refusals('no_exit_available');
    const session = ipc.session({ country: 'fr' });
    await refusal(() => session.fetch(network.httpsTarget), NoExitAvailableError, 503);
    assert.equal(await network.refusals('no_exit_available'), before + 1);
    await session.close();
  });

  // Last: it takes an exit out of the pool.
  it('an exit that stops answering costs a retry on another exit, not a failed request', async () => {
    const frozen = network.agents.get('127.0.0.13');
    assert.ok(frozen);
    // A fresh instance: no kept-alive tunnel through the exit about to freeze.
    const fresh = network.helpers({ retry: { retries: 3, backoffMs: 50, maxBackoffMs: 200 } });
    const failedBefore =
      (await network.refusals('exit_failed')) + (await network.refusals('target_timeout'));
    frozen.child.kill('SIGSTOP');
    try {
      // Each request a new tunnel or a forwarded request, through either us exit: the
      // chance that none of 16 meets the frozen one is 2^-16.
      const bodies = await Promise.all(
        Array.from({ length: 16 }, async (_, i) =>
          (
            await fresh.fetch(i % 2 ? network.httpsTarget : network.httpTarget, { country: 'us' })
          ).text(),
        ),
      );
      assert.deepEqual(new Set(bodies), new Set(['127.0.0.14']));
      const failedAfter =
        (await network.refusals('exit_failed')) + (await network.refusals('target_timeout'));
      assert.ok(failedAfter > failedBefore, 'the frozen exit failed some attempts at the server');
    } finally {
      frozen.child.kill('SIGCONT');
      await fresh.close();
    }
  });
});
