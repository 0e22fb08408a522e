import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { createLogger } from '../src/log/index.ts';
import {
  type ControlApi,
  freshEmail,
  openControlApi,
  PASSWORD,
  sessionCookie,
  TRIAL,
} from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

for (const engine of databaseEngines) {
  describe(`sign-up, sign-in and CSRF on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    const logged: string[] = [];
    before(async () => {
      const sink = {
        write: (line: string) => logged.push(line),
      } as unknown as NodeJS.WritableStream;
      api = await openControlApi(engine, { logger: createLogger('info', sink) });
    });
    after(() => api.close());

    const signup = (email: string, password = PASSWORD) =>
      request(api.app).post('/v1/auth/signup').send({ email, password });

    test('sign-up answers 201 with the account, the user, a CSRF token and a session cookie', async () => {
      const email = freshEmail();
      const res = await signup(email).expect(201).expect('content-type', /json/);
      assert.deepEqual(Object.keys(res.body).sort(), ['account', 'csrf_token', 'user']);
      assert.match(res.body.account.id, /^acct_[a-z0-9]{16}$/);
      assert.deepEqual(res.body.account.balance, {
        currency: 'eur',
        amount_micro: TRIAL.micro,
        amount: '3.50',
      });
      assert.ok(!Number.isNaN(Date.parse(res.body.account.created_at)));
      assert.match(res.body.user.id, /^user_[a-z0-9]{16}$/);
      assert.equal(res.body.user.email, email);
      assert.match(res.body.csrf_token, /^[A-Za-z0-9_-]{43}$/);

      const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? []).join('\n');
      assert.match(cookie, /^ipcola\.sid=/);
      assert.match(cookie, /; HttpOnly/);
      assert.match(cookie, /; SameSite=Lax/);
      assert.match(cookie, /; Path=\//);
      assert.doesNotMatch(cookie, /; Secure/, 'plain HTTP: no Secure flag (it is set over TLS)');
    });

    test('the trial credit is one balanced journal entry and the balance, granted once', async () => {
      const res = await signup(freshEmail()).expect(201);
      const accountId = res.body.account.id;
      const entries = await api.db.query<{ kind: string; reference: string; currency: string }>(
        'SELECT kind, reference, currency FROM journal_entries WHERE account_id = $1',
        [accountId],
      );
      assert.deepEqual(entries, [{ kind: 'trial', reference: accountId, currency: 'eur' }]);
      const postings = await api.db.query<{ book: string; amount_micro: number }>(
        `SELECT p.book, p.amount_micro FROM journal_postings p
         JOIN journal_entries e ON e.id = p.entry_id WHERE e.account_id = $1 ORDER BY p.book`,
        [accountId],
      );
      assert.deepEqual(postings, [
        { book: `customer:${accountId}`, amount_micro: -TRIAL.micro },
        { book: 'promotions', amount_micro: TRIAL.micro },
      ]);
      const [account] = await api.db.query<{ balance_micro: number; currency: string }>(
        'SELECT balance_micro, currency FROM accounts WHERE id = $1',
        [accountId],
      );
      assert.deepEqual(account, { balance_micro: TRIAL.micro, currency: 'eur' });
    });

    test('the password is stored as a scrypt hash with its parameters, never in clear', async () => {
      const email = freshEmail();
      await signup(email).expect(201);
      const [row] = await api.db.query<{ password_hash: string }>(
        'SELECT password_hash FROM users WHERE email = $1',
        [email],
      );
      assert.match(
        row?.password_hash ?? '',
        /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
      );
      assert.ok(!row?.password_hash.includes(PASSWORD));
    });

    test('the session cookie lets /v1/me say who is signed in, with the CSRF token', async () => {
      const agent = request.agent(api.app);
      const email = freshEmail();
      const signed = await agent
        .post('/v1/auth/signup')
        .send({ email, password: PASSWORD })
        .expect(201);
      const me = await agent.get('/v1/me').expect(200);
      assert.deepEqual(me.body, {
        account: signed.body.account,
        user: signed.body.user,
        csrf_token: signed.body.csrf_token,
      });
    });

    test('a cookie-authenticated mutation needs the X-CSRF-Token of its session', async () => {
      const agent = request.agent(api.app);
      const signed = await agent
        .post('/v1/auth/signup')
        .send({ email: freshEmail(), password: PASSWORD })
        .expect(201);
      const token: string = signed.body.csrf_token;

      const missing = await agent.post('/v1/keys').send({ name: 'no token' }).expect(403);
      assert.equal(missing.body.error.code, 'csrf_failed');
      const wrong = await agent
        .post('/v1/keys')
        .set('X-CSRF-Token', `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)
        .send({ name: 'wrong token' })
        .expect(403);
      assert.equal(wrong.body.error.code, 'csrf_failed');
      const short = await agent.post('/v1/keys').set('X-CSRF-Token', 'x').send({}).expect(403);
      assert.equal(short.body.error.code, 'csrf_failed');

      // Another session's token is no good either.
      const other = await request(api.app)
        .post('/v1/auth/signup')
        .send({ email: freshEmail(), password: PASSWORD })
        .expect(201);
      await agent.post('/v1/keys').set('X-CSRF-Token', other.body.csrf_token).send({}).expect(403);

      const made = await agent
        .post('/v1/keys')
        .set('X-CSRF-Token', token)
        .send({ name: 'with token' })
        .expect(201);
      assert.equal(made.body.name, 'with token');
      const keys = await api.db.query('SELECT id FROM api_keys WHERE account_id = $1', [
        signed.body.account.id,
      ]);
      assert.equal(keys.length, 1, 'the refused attempts made nothing');
    });

    test('without a session or key the API answers 401 unauthorized', async () => {
      for (const [method, path] of [
        ['get', '/v1/me'],
        ['post', '/v1/keys'],
        ['post', '/v1/nodes'],
        ['get', '/v1/regions'],
        ['post', '/v1/auth/logout'],
      ] as const) {
        const res = await request(api.app)[method](path).expect(401);
        assert.equal(res.body.error.code, 'unauthorized', `${method} ${path}`);
      }
      // A cookie that names no session is no better.
      const forged = await request(api.app)
        .get('/v1/me')
        .set('Cookie', 'ipcola.sid=s%3Aforged.signature')
        .expect(401);
      assert.equal(forged.body.error.code, 'unauthorized');
    });

    test('sign-in: a wrong password and an unknown email get the same 401', async () => {
      const email = freshEmail();
      await signup(email).expect(201);
      const wrong = await request(api.app)
        .post('/v1/auth/login')
        .send({ email, password: 'not the password' })
        .expect(401);
      const unknown = await request(api.app)
        .post('/v1/auth/login')
        .send({ email: freshEmail('nobody'), password: PASSWORD })
        .expect(401);
      assert.equal(wrong.body.error.code, 'unauthorized');
      assert.deepEqual(wrong.body, unknown.body);
      assert.equal(sessionCookie(wrong), undefined, 'no session for a failed sign-in');
    });

    test('sign-in takes the email in any case and starts a new session (no fixation)', async () => {
      const email = freshEmail('Mixed.Case');
      const signed = await signup(email).expect(201);
      const before = sessionCookie(signed);
      assert.ok(before);

      const res = await request(api.app)
        .post('/v1/auth/login')
        .set('Cookie', `ipcola.sid=${before}`)
        .send({ email: email.toUpperCase(), password: PASSWORD })
        .expect(200);
      assert.deepEqual(Object.keys(res.body).sort(), ['account', 'csrf_token', 'user']);
      assert.equal(res.body.user.id, signed.body.user.id);
      assert.equal(res.body.account.id, signed.body.account.id);
      assert.notEqual(res.body.csrf_token, signed.body.csrf_token);
      const after = sessionCookie(res);
      assert.ok(after);
      assert.notEqual(after, before, 'a new session id');

      // The session id held before sign-in is gone, the new one works.
      await request(api.app).get('/v1/me').set('Cookie', `ipcola.sid=${before}`).expect(401);
      const me = await request(api.app)
        .get('/v1/me')
        .set('Cookie', `ipcola.sid=${after}`)
        .expect(200);
      assert.equal(me.body.user.email, email);
    });

    test('sign-out ends the session: /v1/me is 401 afterwards, even with the old cookie', async () => {
      const agent = request.agent(api.app);
      const signed = await agent
        .post('/v1/auth/signup')
        .send({ email: freshEmail(), password: PASSWORD })
        .expect(201);
      const cookie = sessionCookie(signed);
      await agent.post('/v1/auth/logout').expect(403);
      const out = await agent
        .post('/v1/auth/logout')
        .set('X-CSRF-Token', signed.body.csrf_token)
        .expect(204);
      assert.match(
        ([] as string[]).concat(out.headers['set-cookie'] ?? []).join(),
        /ipcola\.sid=;/,
      );
      await agent.get('/v1/me').expect(401);
      await request(api.app).get('/v1/me').set('Cookie', `ipcola.sid=${cookie}`).expect(401);
    });

    test('sessions are kept in the database by a digest of their id, with an expiry', async () => {
      const signed = await signup(freshEmail()).expect(201);
      const cookie = decodeURIComponent(sessionCookie(signed) ?? '');
      const sid = /^s:([^.]+)\./.exec(cookie)?.[1];
      assert.ok(sid);
      const rows = await api.db.query<{ sid: string; expires_at: Date; data: unknown }>(
        'SELECT sid, expires_at, data FROM sessions',
      );
      assert.ok(rows.length > 0);
      assert.ok(rows.every((row) => row.sid !== sid && /^[0-9a-f]{64}$/.test(row.sid)));
      const mine = rows.find((row) => JSON.stringify(row.data).includes(signed.body.user.id));
      assert.ok(mine, 'the session holds the user id');
      assert.deepEqual(Object.keys((mine.data as { passport: object }).passport), ['user']);
      const days = (mine.expires_at.getTime() - Date.now()) / 86_400_000;
      assert.ok(days > 6.9 && days <= 7, `expires in a week, not ${days} days`);
    });

    test('an expired session is not honoured', async () => {
      const signed = await signup(freshEmail()).expect(201);
      const cookie = sessionCookie(signed) ?? '';
      await request(api.app).get('/v1/me').set('Cookie', `ipcola.sid=${cookie}`).expect(200);
      await api.db.query(
        `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE data::text LIKE $1`,
        [`%${signed.body.user.id}%`],
      );
      await request(api.app).get('/v1/me').set('Cookie', `ipcola.sid=${cookie}`).expect(401);
    });

    test('no password, session id, CSRF token or key secret reaches the log', async () => {
      logged.length = 0;
      const agent = request.agent(api.app);
      const signed = await agent
        .post('/v1/auth/signup')
        .send({ email: freshEmail(), password: PASSWORD })
        .expect(201);
      const sid = sessionCookie(signed) ?? '';
      const key = await agent
        .post('/v1/keys')
        .set('X-CSRF-Token', signed.body.csrf_token)
        .send({ scopes: ['proxy', 'api'] })
        .expect(201);
      await request(api.app)
        .get('/v1/me')
        .set('Authorization', `Bearer ${key.body.id}.${key.body.secret}`)
        .expect(200);
      const text = logged.join('');
      assert.ok(logged.length >= 3, 'the requests were logged');
      for (const secret of [
        PASSWORD,
        sid,
        decodeURIComponent(sid),
        signed.body.csrf_token,
        key.body.secret,
      ]) {
        assert.ok(!text.includes(secret), `${secret.slice(0, 6)}... is not in the log`);
      }
    });

    test('an email is taken whatever its case: 409 email_taken', async () => {
      const email = freshEmail('Taken');
      await signup(email).expect(201);
      for (const again of [email, email.toLowerCase(), email.toUpperCase()]) {
        const res = await signup(again, 'another password').expect(409);
        assert.deepEqual(res.body.error, {
          code: 'email_taken',
          message: 'An account with this email already exists',
        });
      }
    });

    test('concurrent sign-ups with one email: exactly one succeeds, no half-made account', async () => {
      const email = freshEmail('race');
      const accountsBefore = await api.db.query('SELECT id FROM accounts');
      const answers = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          signup(i % 2 ? email.toUpperCase() : email, `${PASSWORD} ${i}`),
        ),
      );
      const statuses = answers.map((res) => res.status).sort();
      assert.deepEqual(statuses, [201, 409, 409, 409, 409]);
      const accountsAfter = await api.db.query('SELECT id FROM accounts');
      assert.equal(accountsAfter.length, accountsBefore.length + 1);
      const users = await api.db.query('SELECT id FROM users WHERE lower(email) = lower($1)', [
        email,
      ]);
      assert.equal(users.length, 1);
    });
  });
}
