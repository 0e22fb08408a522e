/**
 * TRIAL_CREDIT=0 (an operator who gives no free traffic, e.g. while sign-ups are
 * being abused): a new account starts at 0 and its keys are refused with quota_exhausted
 * on every protocol, instead of the trial credit or a crash.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, exchangeText } from './support/raw-exchange.ts';
import {
  type ServerProcess,
  type SignedInApi,
  serverEnv,
  signedInApi,
  startServer,
} from './support/server-process.ts';

describe('a zero trial credit', () => {
  let server: ServerProcess;
  let dataDir: string;
  let api: SignedInApi;
  let ports: { api: number; proxy: number; socks: number };
  let key: { id: string; secret: string };

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-no-trial-'));
    server = await startServer(serverEnv({ DATA_DIR: dataDir, TRIAL_CREDIT: '0' }));
    ports = server.ports as typeof ports;
    api = await signedInApi(ports.api, `no-trial-${Date.now()}@example.com`);
    key = (await (await api('/v1/keys', { method: 'POST', body: '{}' })).json()) as typeof key;
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('the account starts at 0 bytes', async () => {
    const me = (await (await api('/v1/me')).json()) as {
      account: { balance: { amount_micro: number } };
    };
    assert.equal(me.account.balance.amount_micro, 0);
  });

  test('its key is refused with quota_exhausted over HTTP, CONNECT and SOCKS5', async () => {
    const basic = Buffer.from(`${key.id}:${key.secret}`).toString('base64');
    const forwarded = await exchangeText(
      ports.proxy,
      `GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic ${basic}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(forwarded, /^HTTP\/1\.1 402 /);
    assert.match(forwarded, /X-IPCola-Error: quota_exhausted/i);
    const tunnel = await exchangeText(
      ports.proxy,
      `CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`,
    );
    assert.match(tunnel, /^HTTP\/1\.1 402 /);

    const user = Buffer.from(key.id);
    const password = Buffer.from(key.secret);
    const socks = await exchange(
      ports.socks,
      Buffer.concat([
        Buffer.from([5, 1, 2]),
        Buffer.from([1, user.length]),
        user,
        Buffer.from([password.length]),
        password,
        Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 9]),
      ]),
    );
    // Method 0x02, credentials accepted, then the request answered with REP 0x02.
    assert.deepEqual([...socks.subarray(0, 6)], [5, 2, 1, 0, 5, 2]);
  });
});
