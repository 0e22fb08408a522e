import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { createAccounts, loadOrCreatePepper } from '../src/accounts/index.ts';
import { createApiApp, DatabaseSessionStore } from '../src/api/index.ts';
import { createPriceBook } from '../src/billing/index.ts';
import { createMemoryHotState, type Database, migrate, openPostgres } from '../src/store/index.ts';
import {
  ENDPOINT,
  freshEmail,
  OPENAPI,
  PASSWORD,
  sessionCookie,
  TRIAL,
} from './support/control-api.ts';
import {
  createScratchDatabase,
  databaseEngines,
  needs,
  type Opened,
  quietLogger,
  required,
} from './support/engines.ts';

for (const engine of databaseEngines) {
  describe(`servers sharing one ${engine.name} database`, { skip: engine.skip }, () => {
    let opened: Opened<Database>;
    let db: Database;
    before(async () => {
      opened = await engine.open();
      db = opened.value;
      await migrate(db);
    });
    after(() => opened.dispose());

    const server = async () => {
      const pepper = await loadOrCreatePepper(db);
      const accounts = createAccounts(db, { pepper, trialCredit: TRIAL });
      const prices = await createPriceBook(db, { currency: TRIAL.currency });
      const app = createApiApp({
        logger: quietLogger,
        dependencies: { database: db, hot_state: createMemoryHotState() },
        openapiDocument: OPENAPI,
        control: {
          accounts,
          database: db,
          proxyEndpoint: ENDPOINT,
          listRegions: async () => [],
          prices,
        },
      });
      return { pepper, accounts, app };
    };

    test('the pepper is made once, whoever asks first, and is 32 random bytes', async () => {
      const peppers = await Promise.all(Array.from({ length: 8 }, () => loadOrCreatePepper(db)));
      assert.equal(peppers[0]?.length, 32);
      assert.ok(peppers.every((pepper) => pepper.equals(peppers[0] as Buffer)));
      const rows = await db.query('SELECT name FROM settings');
      assert.deepEqual(rows, [{ name: 'pepper' }]);
    });

    test('a key issued on one server verifies on another; derived secrets agree', async () => {
      const a = await server();
      const b = await server();
      const { account } = await a.accounts.signup(freshEmail(), PASSWORD);
      const key = await a.accounts.issueKey(account.id);
      assert.equal((await b.accounts.verifyKey(key.id, key.secret))?.id, key.id);
      assert.ok(
        a.accounts.deriveSecret('session cookie').equals(b.accounts.deriveSecret('session cookie')),
      );
      assert.ok(
        !a.accounts.deriveSecret('session cookie').equals(a.accounts.deriveSecret('other')),
      );
      assert.ok(!a.accounts.deriveSecret('session cookie').equals(a.pepper));
    });

    test('a session started on one server is honoured by another, and ended for both', async () => {
      const a = await server();
      const b = await server();
      const signed = await request(a.app)
        .post('/v1/auth/signup')
        .send({ email: freshEmail(), password: PASSWORD })
        .expect(201);
      const cookie = `ipcola.sid=${sessionCookie(signed)}`;
      const me = await request(b.app).get('/v1/me').set('Cookie', cookie).expect(200);
      assert.equal(me.body.user.id, signed.body.user.id);
      await request(b.app)
        .post('/v1/auth/logout')
        .set('Cookie', cookie)
        .set('X-CSRF-Token', signed.body.csrf_token)
        .expect(204);
      await request(a.app).get('/v1/me').set('Cookie', cookie).expect(401);
    });

    test('the session store ignores expired rows and prunes them on a later write', async () => {
      const store = new DatabaseSessionStore(db, { pruneEveryMs: 0 });
      const call = <T>(fn: (done: (error: unknown, value?: T) => void) => void) =>
        new Promise<T | undefined>((resolve, reject) =>
          fn((error, value) => (error ? reject(error) : resolve(value))),
        );
      const cookie = (ms: number) =>
        ({ originalMaxAge: ms, expires: new Date(Date.now() + ms) }) as never;
      await call((done) => store.set('old-session', { cookie: cookie(-1_000) }, done));
      assert.equal(await call((done) => store.get('old-session', done)), null);
      await call((done) => store.set('new-session', { cookie: cookie(60_000) }, done));
      const loaded = await call<{ cookie: { originalMaxAge: number } }>((done) =>
        store.get('new-session', done as never),
      );
      assert.equal(loaded?.cookie.originalMaxAge, 60_000);
      const expired = await db.query('SELECT sid FROM sessions WHERE expires_at <= now()');
      assert.equal(expired.length, 0, 'the write pruned the expired row');
      await call((done) => store.destroy('new-session', done));
      assert.equal(await call((done) => store.get('new-session', done)), null);
    });
  });
}

test('three servers starting together on one PostgreSQL database agree on one pepper', {
  skip: needs('DATABASE_URL'),
}, async () => {
  const scratch = await createScratchDatabase(required('DATABASE_URL'));
  const pools = await Promise.all([1, 2, 3].map(() => openPostgres(scratch.url, quietLogger)));
  try {
    await Promise.all(pools.map((pool) => migrate(pool)));
    const peppers = await Promise.all(pools.map((pool) => loadOrCreatePepper(pool)));
    assert.ok(peppers.every((pepper) => pepper.equals(peppers[0] as Buffer)));
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
    await scratch.drop();
  }
});
