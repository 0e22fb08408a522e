import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import request from 'supertest';
import { MIGRATIONS_DIR, migrate } from '../src/store/migrate.ts';
import { type ControlApi, openControlApi, signUp } from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

for (const engine of databaseEngines) {
  describe(`new keys on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    let agent: ReturnType<typeof request.agent>;
    let csrf: string;

    before(async () => {
      api = await openControlApi(engine);
      ({ agent, csrf } = await signUp(api.app));
    });
    after(() => api.close());

    const createKey = (body: object) => agent.post('/v1/keys').set('X-CSRF-Token', csrf).send(body);
    const bearer = (key: { id: string; secret: string }) => `Bearer ${key.id}.${key.secret}`;
    const keyCount = async () =>
      (await agent.get('/v1/keys').expect(200)).body.items.length as number;

    test('a key made without scopes carries traffic but cannot call the API, nor make or revoke keys', async () => {
      const key = (await createKey({ name: 'copied into a scraper' }).expect(201)).body;
      assert.deepEqual(key.scopes, ['proxy']);
      assert.ok(await api.accounts.verifyKey(key.id, key.secret), 'the proxy password works');
      const before = await keyCount();
      for (const call of [
        request(api.app).get('/v1/me'),
        request(api.app)
          .post('/v1/keys')
          .send({ scopes: ['proxy', 'api'] }),
        request(api.app).delete(`/v1/keys/${key.id}`),
      ]) {
        const refused = await call.set('Authorization', bearer(key)).expect(403);
        assert.equal(refused.body.error.code, 'forbidden');
      }
      assert.equal(await keyCount(), before, 'no key was made or revoked');
      assert.equal((await agent.get(`/v1/keys/${key.id}`).expect(200)).body.id, key.id);
    });

    test('asking for api gives a bearer token that may manage keys', async () => {
      const key = (await createKey({ scopes: ['proxy', 'api'] }).expect(201)).body;
      assert.deepEqual(key.scopes, ['proxy', 'api']);
      const made = await request(api.app)
        .post('/v1/keys')
        .set('Authorization', bearer(key))
        .send({ name: 'made by a key' })
        .expect(201);
      assert.deepEqual(made.body.scopes, ['proxy'], 'and what it makes is proxy only too');
    });

    test('one POST takes every setting PATCH takes', async () => {
      const settings = {
        name: 'all at once',
        scopes: ['proxy'],
        monthly_byte_cap: 5_000_000,
        max_concurrency: 3,
        allowed_countries: ['de', 'us'],
        client_allowlist: ['10.1.2.3', '192.0.2.0/24'],
        disabled: true,
        passwordless_cidrs: ['198.51.100.0/24'],
        default_targeting: 'country-de-type-residential',
      };
      const created = (await createKey(settings).expect(201)).body;
      const shown = (await agent.get(`/v1/keys/${created.id}`).expect(200)).body;
      assert.deepEqual(
        {
          name: shown.name,
          scopes: shown.scopes,
          monthly_byte_cap: shown.monthly_byte_cap,
          max_concurrency: shown.max_concurrency,
          allowed_countries: shown.allowed_countries,
          client_allowlist: shown.client_allowlist,
          disabled: shown.disabled,
          passwordless_cidrs: shown.passwordless_cidrs,
          default_targeting: shown.default_targeting,
        },
        { ...settings, client_allowlist: ['10.1.2.3/32', '192.0.2.0/24'] },
      );
      assert.equal(
        await api.accounts.verifyKey(created.id, created.secret),
        null,
        'made disabled, it does not verify',
      );
    });

    test('a refused setting makes no key at all', async () => {
      const before = await keyCount();
      for (const [body, message] of [
        [{ name: 'bad range', client_allowlist: ['10.0.0.0/33'] }, /client_allowlist/],
        [{ name: 'bad targeting', default_targeting: 'country-zz' }, /default_targeting/],
        [{ name: 'bad targeting', default_targeting: 'colour-red' }, /default_targeting/],
        [{ name: 'too wide', passwordless_cidrs: ['10.0.0.0/8'] }, /wider than \/16/],
        [{ name: 'self overlap', passwordless_cidrs: ['10.9.0.0/16', '10.9.8.0/24'] }, /overlap/],
        [{ name: 'no scopes', scopes: [] }, /scopes/],
      ] as const) {
        const refused = await createKey(body).expect(400);
        assert.equal(refused.body.error.code, 'invalid_request');
        assert.match(refused.body.error.message, message);
      }
      assert.equal(await keyCount(), before);
    });
  });

  describe(`keys made before the change on ${engine.name}`, () => {
    test('keep both scopes; only new rows default to proxy', async () => {
      const opened = await engine.open();
      const older = await mkdtemp(path.join(tmpdir(), 'ipcola-migrations-'));
      try {
        const db = opened.value;
        // The schema as it was before proxy-only keys: every migration before 0009.
        const files = (await readdir(MIGRATIONS_DIR)).filter((name) => name < '0009');
        for (const name of files) {
          await copyFile(new URL(name, MIGRATIONS_DIR), path.join(older, name));
        }
        await migrate(db, pathToFileURL(`${older}/`));
        await db.query(`INSERT INTO accounts (id) VALUES ('acc_old')`);
        await db.query(
          `INSERT INTO api_keys (id, account_id, secret_hash) VALUES ('oldkey', 'acc_old', 'x')`,
        );
        assert.ok((await migrate(db)).includes('0009_proxy_only_keys_and_passwordless_cidrs'));
        await db.query(
          `INSERT INTO api_keys (id, account_id, secret_hash) VALUES ('newkey', 'acc_old', 'y')`,
        );
        const rows = await db.query<{ id: string; scopes: string[] }>(
          'SELECT id, scopes FROM api_keys ORDER BY id',
        );
        assert.deepEqual(rows, [
          { id: 'newkey', scopes: ['proxy'] },
          { id: 'oldkey', scopes: ['proxy', 'api'] },
        ]);
      } finally {
        await opened.dispose();
        await rm(older, { recursive: true, force: true });
      }
    });
  });
}
