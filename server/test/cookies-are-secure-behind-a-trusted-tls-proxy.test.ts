/**
 * Behind a TLS-terminating proxy listed in TRUST_PROXY, the session cookie is Secure
 * when the proxy says the client came over https, and the client address that sign-up
 * and log-in limits count by is the one the proxy forwards. The same headers from any
 * other peer are ignored.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';
import { type Answer, signup } from './support/signup-from.ts';

/** The TLS proxy in front of the API, as the API sees it. */
const PROXY = '127.0.0.31';
/** A client reaching the API directly, past the proxy. */
const STRANGER = '127.0.0.32';
const LIMIT = 2;

function sessionCookie(answer: Answer): string {
  const cookies = answer.headers['set-cookie'] ?? [];
  const cookie = (Array.isArray(cookies) ? cookies : [cookies]).find((line) =>
    line.startsWith('ipcola.sid='),
  );
  assert.ok(cookie, `a session cookie in ${JSON.stringify(answer.headers)}`);
  return cookie;
}

const isSecure = (cookie: string) => /;\s*Secure(;|$)/i.test(cookie);

describe('cookies are Secure behind a trusted TLS proxy', () => {
  let server: ServerProcess;
  let dataDir: string;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-trust-proxy-'));
    server = await startServer(
      serverEnv({
        DATA_DIR: dataDir,
        TRUST_PROXY: `${PROXY}/32,fd00::/8`,
        SIGNUP_LIMIT_PER_HOUR: String(LIMIT),
      }),
    );
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('X-Forwarded-Proto: https from the proxy makes the cookie Secure; plain http does not', async () => {
    const overTls = await signup(server.ports.api, {
      from: PROXY,
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.1' },
    });
    assert.equal(overTls.status, 201);
    assert.ok(isSecure(sessionCookie(overTls)), sessionCookie(overTls));

    const overHttp = await signup(server.ports.api, {
      from: PROXY,
      headers: { 'x-forwarded-proto': 'http', 'x-forwarded-for': '198.51.100.2' },
    });
    assert.equal(overHttp.status, 201);
    assert.ok(!isSecure(sessionCookie(overHttp)), sessionCookie(overHttp));
  });

  test('from any other peer X-Forwarded-Proto is ignored', async () => {
    const spoofed = await signup(server.ports.api, {
      from: STRANGER,
      headers: { 'x-forwarded-proto': 'https' },
    });
    assert.equal(spoofed.status, 201);
    assert.ok(!isSecure(sessionCookie(spoofed)), sessionCookie(spoofed));
  });

  test('the sign-up limit counts the address the proxy forwards, and only the peer elsewhere', async () => {
    const viaProxy = (client: string) =>
      signup(server.ports.api, {
        from: PROXY,
        headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': client },
      });
    // 198.51.100.1 signed up once above; one more is its limit.
    assert.equal((await viaProxy('198.51.100.1')).status, 201);
    const limited = await viaProxy('198.51.100.1');
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error?.code, 'rate_limited');
    // A client can put anything before the proxy's entry; the proxy appends the real address.
    assert.equal((await viaProxy('203.0.113.50, 198.51.100.1')).status, 429);
    // Other clients of the same proxy are not affected by one that is limited.
    assert.equal((await viaProxy('198.51.100.3')).status, 201);

    // The stranger signed up once above; each spoofed forwarded address still counts as it.
    const direct = (forwarded: string) =>
      signup(server.ports.api, { from: STRANGER, headers: { 'x-forwarded-for': forwarded } });
    assert.equal((await direct('198.51.100.40')).status, 201);
    assert.equal((await direct('198.51.100.41')).status, 429);
  });
});
