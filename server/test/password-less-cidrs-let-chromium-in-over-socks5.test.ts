/**
 * A key's password-less ranges: a connection from one of them that presents no
 * credentials at all is that key, with the key's default targeting. This is the only way
 * Chromium (and so Playwright) can use a SOCKS5 proxy, since it never sends SOCKS5
 * credentials. Everyone else still needs credentials.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { type Accounts, createAccounts, loadOrCreatePepper } from '../src/accounts/index.ts';
import { migrate } from '../src/store/index.ts';
import { databaseEngines, eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { signedInApi } from './support/server-process.ts';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** An address on this machine outside the password-less range (loopback is all of 127/8). */
const OUTSIDE = '127.0.0.5';

/** Writes `bytes` to the port from `localAddress` and collects what comes back until the peer closes, or `until` says enough. */
async function talk(
  port: number,
  bytes: Buffer | string,
  localAddress: string,
  until: (received: Buffer) => boolean = () => false,
): Promise<Buffer> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  socket.write(bytes);
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no whole answer in 15 s: ${Buffer.concat(chunks).toString('latin1')}`));
    }, 15_000);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (until(Buffer.concat(chunks))) done();
    });
    socket.on('close', done);
  });
}

describe('password-less CIDRs', () => {
  let net: ProxyNetwork;
  let key: { id: string; secret: string };
  let chromiumDir: string | undefined;

  before(async () => {
    net = await startProxyNetwork(
      [
        { ip: '127.0.0.12', country: 'de' },
        { ip: '127.0.0.13', country: 'us' },
      ],
      { USAGE_FLUSH_INTERVAL_MS: '200' },
    );
    const created = await net.api('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({
        name: 'browsers',
        passwordless_cidrs: ['127.0.0.1/32'],
        default_targeting: 'country-de',
      }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    key = (await created.json()) as { id: string; secret: string };
  });
  after(async () => {
    if (chromiumDir) await rm(chromiumDir, { recursive: true, force: true });
    await net?.close();
  });

  const forward = (proxyAuthorization?: string) =>
    `GET ${net.target}/ HTTP/1.1\r\nHost: 127.0.0.1:${net.targetPort}\r\n` +
    (proxyAuthorization ? `Proxy-Authorization: ${proxyAuthorization}\r\n` : '') +
    'Connection: close\r\n\r\n';

  test('Chromium over socks5:// with no credentials reaches the target through the default exit, metered to the key', async (t) => {
    chromiumDir = await mkdtemp(path.join(tmpdir(), 'ipcola-chromium-'));
    const context = await chromium.launchPersistentContext(chromiumDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
      // Chromium never proxies loopback unless told to with this rule.
      proxy: { server: `socks5://127.0.0.1:${net.ports.socks}`, bypass: '<-loopback>' },
    });
    try {
      const page = await context.newPage();
      const response = await page.goto(`${net.target}/`);
      assert.equal(response?.status(), 200);
      // The whoami target answers with the address it was reached from: the de exit.
      assert.equal((await page.textContent('body'))?.trim(), '127.0.0.12');
    } finally {
      await context.close();
    }
    let carried = 0;
    await eventually(
      async () => {
        const usage = await net.api(`/v1/usage?key_id=${key.id}`);
        const { totals } = (await usage.json()) as {
          totals: { bytes_up: number; bytes_down: number; requests: number };
        };
        carried = totals.bytes_up + totals.bytes_down;
        // The tunnel is metered while open and once more as it closes: wait for the whole
        // exchange, at least a browser's request headers and the page.
        return carried >= 500;
      },
      15_000,
      'the browser traffic metered to the password-less key',
    );
    t.diagnostic(`${carried} bytes of Chromium's traffic metered to the password-less key`);
  });

  test('an HTTP request without Proxy-Authorization from the range is the key; from elsewhere it is auth_required', async () => {
    const inside = (await talk(net.ports.proxy, forward(), '127.0.0.1')).toString('latin1');
    assert.match(inside, /^HTTP\/1\.1 200 /);
    assert.match(inside, /\r\n\r\n127\.0\.0\.12$/, 'through the default de exit');

    const outside = (await talk(net.ports.proxy, forward(), OUTSIDE)).toString('latin1');
    assert.match(outside, /^HTTP\/1\.1 407 /);
    assert.match(outside, /X-IPCola-Error: auth_required/i);
  });

  test('a username still carries parameters: with an empty password from the range it names the key and targets', async () => {
    const basic = (user: string) => `Basic ${Buffer.from(`${user}:`).toString('base64')}`;
    const us = (
      await talk(net.ports.proxy, forward(basic(`${key.id}-country-us`)), '127.0.0.1')
    ).toString('latin1');
    assert.match(us, /^HTTP\/1\.1 200 /);
    assert.match(us, /\r\n\r\n127\.0\.0\.13$/, 'the username picked the us exit');

    // The same username and empty password from outside the range is a wrong password.
    const outside = (
      await talk(net.ports.proxy, forward(basic(`${key.id}-country-us`)), OUTSIDE)
    ).toString('latin1');
    assert.match(outside, /X-IPCola-Error: auth_failed/i);
    // Another key's id from inside the range is not this key.
    const other = (
      await talk(net.ports.proxy, forward(basic(`${net.key.id}-country-us`)), '127.0.0.1')
    ).toString('latin1');
    assert.match(other, /X-IPCola-Error: auth_failed/i);
  });

  test('SOCKS5: "no authentication" is chosen only from the range; username/password is chosen whenever offered', async () => {
    const noAuth = Buffer.from([5, 1, 0]);
    assert.deepEqual(
      [...(await talk(net.ports.socks, noAuth, '127.0.0.1', (got) => got.length >= 2))],
      [5, 0],
    );
    assert.deepEqual([...(await talk(net.ports.socks, noAuth, OUTSIDE))], [5, 0xff]);
    const both = Buffer.from([5, 2, 0, 2]);
    assert.deepEqual(
      [...(await talk(net.ports.socks, both, '127.0.0.1', (got) => got.length >= 2))],
      [5, 2],
    );
  });

  test("the key's allow-list still applies, and a change reaches the gateway within about a second", async (t) => {
    const patch = (body: object) =>
      net.api(`/v1/keys/${key.id}`, { method: 'PATCH', body: JSON.stringify(body) });
    assert.equal((await patch({ client_allowlist: ['127.0.0.2/32'] })).status, 200);
    await eventually(
      async () =>
        /X-IPCola-Error: ip_not_allowed/i.test(
          (await talk(net.ports.proxy, forward(), '127.0.0.1')).toString('latin1'),
        ),
      3_000,
      'ip_not_allowed for a password-less client outside the allow-list',
    );
    assert.equal((await patch({ client_allowlist: null })).status, 200);
    await eventually(
      async () =>
        /^HTTP\/1\.1 200 /.test(
          (await talk(net.ports.proxy, forward(), '127.0.0.1')).toString('latin1'),
        ),
      3_000,
      'admitted again once the allow-list is lifted',
    );

    // A tunnel opened without credentials, carrying requests, while the range is the key's.
    const tunnel = connect({ port: net.ports.proxy, host: '127.0.0.1' });
    tunnel.on('error', () => {});
    let tunnelClosed = false;
    tunnel.once('close', () => {
      tunnelClosed = true;
    });
    let seen = '';
    tunnel.setEncoding('latin1').on('data', (chunk: string) => {
      seen += chunk;
    });
    const authority = `127.0.0.1:${net.targetPort}`;
    tunnel.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    await eventually(() => seen.includes('\r\n\r\n'), 10_000, 'the CONNECT answer');
    assert.match(seen, /^HTTP\/1\.1 200 /);
    tunnel.write(`GET / HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    await eventually(() => seen.endsWith('127.0.0.12'), 10_000, 'an answer through the tunnel');

    assert.equal((await patch({ passwordless_cidrs: [] })).status, 200);
    const changedAt = performance.now();
    await eventually(() => tunnelClosed, 5_000, 'the open tunnel cut');
    const cutMs = performance.now() - changedAt;
    assert.ok(cutMs < 2_000, `the open tunnel was cut ${Math.round(cutMs)} ms after the removal`);
    t.diagnostic(`an open password-less tunnel was cut ${Math.round(cutMs)} ms after the removal`);
    await eventually(
      async () =>
        /X-IPCola-Error: auth_required/i.test(
          (await talk(net.ports.proxy, forward(), '127.0.0.1')).toString('latin1'),
        ),
      3_000,
      'auth_required once the range is removed',
    );
    const tookMs = performance.now() - changedAt;
    assert.ok(tookMs < 2_000, `the removal took effect after ${Math.round(tookMs)} ms`);
    t.diagnostic(`a removed range stopped admitting after ${Math.round(tookMs)} ms`);
    assert.equal((await patch({ passwordless_cidrs: ['127.0.0.1/32'] })).status, 200);
  });

  test('a range password-less for one key is refused to every other key, in any account', async () => {
    const other = await signedInApi(net.ports.api, `other-${Date.now()}@example.com`);
    for (const cidrs of [['127.0.0.0/24'], ['127.0.0.1/32'], ['127.0.0.1']]) {
      const refused = await other('/v1/keys', {
        method: 'POST',
        body: JSON.stringify({ passwordless_cidrs: cidrs }),
      });
      assert.equal(refused.status, 409);
      const { error } = (await refused.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'passwordless_cidr_taken');
      assert.doesNotMatch(error.message, new RegExp(key.id), 'the owner is not named');
    }
    // A neighbouring range is free.
    const free = await other('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ passwordless_cidrs: ['127.0.1.0/24'] }),
    });
    assert.equal(free.status, 201);
  });
});

for (const engine of databaseEngines) {
  describe(`password-less ranges on ${engine.name}`, { skip: engine.skip }, () => {
    let dispose: () => Promise<void>;
    let accounts: Accounts;
    before(async () => {
      const opened = await engine.open();
      dispose = opened.dispose;
      await migrate(opened.value);
      accounts = createAccounts(opened.value, {
        pepper: await loadOrCreatePepper(opened.value),
        trialCredit: { currency: 'usd', micro: 0 },
      });
    });
    after(() => dispose());

    const newAccountKey = async (label: string) => {
      const { account } = await accounts.signup(
        `${label}-${Date.now()}@example.com`,
        'a long enough password',
      );
      return { accountId: account.id, keyId: (await accounts.issueKey(account.id)).id };
    };

    test('accounts racing for overlapping ranges: exactly one wins', async () => {
      const racers = await Promise.all(
        Array.from({ length: 6 }, (_, i) => newAccountKey(`racer${i}`)),
      );
      const results = await Promise.allSettled(
        racers.map(({ accountId, keyId }, i) =>
          accounts.updateKey(accountId, keyId, {
            // Nested ranges, so that every pair overlaps.
            passwordlessCidrs: [`203.0.113.0/${24 + (i % 4)}`],
          }),
        ),
      );
      const won = results.filter((result) => result.status === 'fulfilled');
      assert.equal(won.length, 1, JSON.stringify(results.map((result) => result.status)));
      for (const result of results) {
        if (result.status === 'rejected') {
          assert.equal(result.reason.code, 'passwordless_cidr_taken');
        }
      }
    });

    test('the address lookup holds exactly the range; a revoked key frees it', async () => {
      const { accountId, keyId } = await newAccountKey('lookup');
      await accounts.updateKey(accountId, keyId, {
        passwordlessCidrs: ['198.18.4.0/22'],
        defaultTargeting: 'country-us',
      });
      for (const inside of ['198.18.4.0', '198.18.7.255', '::ffff:198.18.5.9']) {
        const found = await accounts.passwordlessKey(inside);
        assert.equal(found?.id, keyId, inside);
        assert.equal(found?.defaultTargeting, 'country-us');
      }
      for (const outside of ['198.18.3.255', '198.18.8.0', '::1', 'not an address', '']) {
        assert.equal(await accounts.passwordlessKey(outside), null, outside);
      }
      await accounts.updateKey(accountId, keyId, { disabled: true });
      assert.equal(await accounts.passwordlessKey('198.18.4.1'), null, 'a disabled key is none');
      assert.ok(await accounts.revokeKey(accountId, keyId));
      const next = await newAccountKey('next');
      const taken = await accounts.updateKey(next.accountId, next.keyId, {
        passwordlessCidrs: ['198.18.4.0/24'],
      });
      assert.deepEqual(taken?.passwordlessCidrs, ['198.18.4.0/24']);
    });
  });
}
