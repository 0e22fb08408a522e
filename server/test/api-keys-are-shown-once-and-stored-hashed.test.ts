import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { parseProxyUsername } from '../src/gateway/credentials.ts';
import { type ControlApi, ENDPOINT, openControlApi, signUp } from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

for (const engine of databaseEngines) {
  describe(`API keys on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    let agent: ReturnType<typeof request.agent>;
    let csrf: string;
    let accountId: string;

    before(async () => {
      api = await openControlApi(engine);
      ({ agent, csrf, accountId } = await signUp(api.app));
    });
    after(() => api.close());

    const createKey = (body?: object) => {
      const req = agent.post('/v1/keys').set('X-CSRF-Token', csrf);
      return body === undefined ? req : req.send(body);
    };

    test('a new key answers once with its secret and ready proxy credentials', async () => {
      const res = await createKey({ name: 'scraper' })
        .expect(201)
        .expect('cache-control', 'no-store');
      const key = res.body;
      assert.deepEqual(Object.keys(key).sort(), [
        'created_at',
        'curl_example',
        'http_proxy_url',
        'id',
        'name',
        'proxy_password',
        'proxy_username',
        'scopes',
        'secret',
        'socks_proxy_url',
      ]);
      assert.match(key.id, /^[a-z0-9]{12}$/);
      assert.match(key.secret, /^[A-Za-z0-9]{43}$/, '256 bits of letters and digits');
      assert.equal(key.name, 'scraper');
      assert.deepEqual(key.scopes, ['proxy'], 'api is only given when asked for');
      assert.equal(key.proxy_username, key.id);
      assert.equal(key.proxy_password, key.secret);

      const http = new URL(key.http_proxy_url);
      assert.equal(http.protocol, 'http:');
      assert.equal(http.hostname, ENDPOINT.host);
      assert.equal(http.port, String(ENDPOINT.httpPort));
      assert.equal(http.username, key.id);
      assert.equal(http.password, key.secret);

      const socks = new URL(key.socks_proxy_url);
      assert.equal(socks.protocol, 'socks5h:');
      assert.equal(socks.hostname, ENDPOINT.host);
      assert.equal(socks.port, String(ENDPOINT.socksPort));
      assert.equal(socks.username, key.id);
      assert.equal(socks.password, key.secret);

      const words = key.curl_example.split(' ');
      assert.deepEqual([words[0], words[1], words[3]], ['curl', '-x', 'https://example.com']);
      assert.equal(words.length, 4);
      const proxy = new URL(words[2]);
      assert.equal(proxy.protocol, 'http:');
      assert.equal(proxy.host, `${ENDPOINT.host}:${ENDPOINT.httpPort}`);
      assert.equal(proxy.password, key.secret);
      assert.deepEqual(parseProxyUsername(proxy.username), {
        keyId: key.id,
        targeting: { country: 'us' },
        session: null,
      });
    });

    test('a key needs no body; its name is then empty', async () => {
      const res = await createKey().expect(201);
      assert.equal(res.body.name, '');
    });

    test('the secret is stored only as its HMAC under the pepper', async () => {
      const res = await createKey({ name: 'hashed' }).expect(201);
      const rows = await api.db.query<Record<string, unknown>>(
        'SELECT * FROM api_keys WHERE id = $1',
        [res.body.id],
      );
      assert.equal(rows.length, 1);
      const row = rows[0] as Record<string, unknown>;
      assert.equal(row.account_id, accountId);
      assert.equal(
        row.secret_hash,
        createHmac('sha256', api.pepper).update(res.body.secret).digest('hex'),
      );
      assert.ok(!JSON.stringify(row).includes(res.body.secret), 'the secret is nowhere in the row');
      const dump = await api.db.query<{ t: string }>('SELECT api_keys::text AS t FROM api_keys');
      assert.ok(dump.every(({ t }) => !t.includes(res.body.secret)));
    });

    test('KEYID.SECRET as a bearer token works without a CSRF token', async () => {
      const key = (await createKey({ name: 'bearer', scopes: ['proxy', 'api'] }).expect(201)).body;
      const bearer = `Bearer ${key.id}.${key.secret}`;
      const me = await request(api.app).get('/v1/me').set('Authorization', bearer).expect(200);
      assert.equal(me.body.account.id, accountId);
      assert.equal(me.body.user, null);
      assert.equal(me.body.csrf_token, undefined);
      const made = await request(api.app)
        .post('/v1/keys')
        .set('Authorization', bearer)
        .send({ name: 'made by a key' })
        .expect(201);
      assert.equal(made.body.name, 'made by a key');
      await request(api.app).post('/v1/auth/logout').set('Authorization', bearer).expect(204);
      // Logging out is meaningless for a key: it still works.
      await request(api.app).get('/v1/me').set('Authorization', bearer).expect(200);
    });

    test('a wrong secret, an unknown key or a malformed header is 401, never the cookie', async () => {
      const key = (await createKey({ name: 'target' }).expect(201)).body;
      const flipped = `${key.secret.slice(0, -1)}${key.secret.endsWith('a') ? 'b' : 'a'}`;
      for (const authorization of [
        `Bearer ${key.id}.${flipped}`,
        `Bearer zzzzzzzzzzzz.${key.secret}`,
        `Bearer ${key.id}`,
        `Bearer ${key.id}:${key.secret}`,
        `Basic ${Buffer.from(`${key.id}:${key.secret}`).toString('base64')}`,
        'Bearer ',
      ]) {
        // The agent also sends its valid session cookie: the bad header still decides.
        const res = await agent
          .post('/v1/keys')
          .set('X-CSRF-Token', csrf)
          .set('Authorization', authorization)
          .send({})
          .expect(401);
        assert.equal(res.body.error.code, 'unauthorized', authorization);
        assert.doesNotMatch(res.text, new RegExp(key.secret));
      }
    });

    test('a key without the api scope is 403 forbidden on the API', async () => {
      const proxyOnly = await api.accounts.issueKey(accountId, { scopes: ['proxy'] });
      const res = await request(api.app)
        .get('/v1/me')
        .set('Authorization', `Bearer ${proxyOnly.id}.${proxyOnly.secret}`)
        .expect(403);
      assert.equal(res.body.error.code, 'forbidden');
    });

    test('verifyKey: the live key with its limits; null for a wrong, revoked or disabled one', async () => {
      const key = await api.accounts.issueKey(accountId, { name: 'direct' });
      const verified = await api.accounts.verifyKey(key.id, key.secret);
      assert.deepEqual(verified, {
        id: key.id,
        accountId,
        name: 'direct',
        scopes: ['proxy'],
        monthlyByteCap: null,
        maxConcurrency: null,
        allowedCountries: null,
        clientAllowlist: null,
      });
      assert.equal(await api.accounts.verifyKey(key.id, key.secret.toLowerCase()), null);
      assert.equal(await api.accounts.verifyKey(key.id, ''), null);
      assert.equal(await api.accounts.verifyKey('nosuchkey000', key.secret), null);
      assert.equal(await api.accounts.verifyKey(`${key.id}'--`, key.secret), null);

      await api.db.query('UPDATE api_keys SET disabled = true WHERE id = $1', [key.id]);
      assert.equal(await api.accounts.verifyKey(key.id, key.secret), null);
      await api.db.query('UPDATE api_keys SET disabled = false, revoked_at = now() WHERE id = $1', [
        key.id,
      ]);
      assert.equal(await api.accounts.verifyKey(key.id, key.secret), null);
      await request(api.app)
        .get('/v1/me')
        .set('Authorization', `Bearer ${key.id}.${key.secret}`)
        .expect(401);
    });

    test('issueKey refuses an unusable name or scope list', async () => {
      await assert.rejects(api.accounts.issueKey(accountId, { name: 'x'.repeat(101) }), {
        code: 'invalid_request',
      });
      await assert.rejects(api.accounts.issueKey(accountId, { scopes: [] }), {
        code: 'invalid_request',
      });
    });
  });
}

describe('proxy URLs for an IPv6 proxy address', () => {
  const [pglite] = databaseEngines;
  test('the address is bracketed, and a late-known endpoint is read when the key is made', async () => {
    let port = 0;
    const api = await openControlApi(pglite as (typeof databaseEngines)[number], {
      endpoint: () => ({ host: '2001:db8::7', httpPort: port, socksPort: 1080, hubPort: 7000 }),
    });
    try {
      port = 18_000;
      const { agent, csrf } = await signUp(api.app);
      const key = (await agent.post('/v1/keys').set('X-CSRF-Token', csrf).expect(201)).body;
      const url = new URL(key.http_proxy_url);
      assert.equal(url.hostname, '[2001:db8::7]');
      assert.equal(url.port, '18000');
      assert.equal(new URL(key.socks_proxy_url).hostname, '[2001:db8::7]');
    } finally {
      await api.close();
    }
  });
});
