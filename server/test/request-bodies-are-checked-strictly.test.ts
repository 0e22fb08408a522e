import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { parse as parseYaml } from 'yaml';
import {
  EMAIL_MAX_LENGTH,
  isEmailAddress,
  NAME_MAX_LENGTH,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
} from '../src/accounts/index.ts';
import { createBodyValidator } from '../src/api/validate.ts';
import {
  type ControlApi,
  freshEmail,
  OPENAPI,
  openControlApi,
  PASSWORD,
  signUp,
} from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

const [pglite] = databaseEngines;

describe('request bodies are checked against the OpenAPI schemas', () => {
  let api: ControlApi;
  let agent: ReturnType<typeof request.agent>;
  let csrf: string;

  before(async () => {
    api = await openControlApi(pglite as (typeof databaseEngines)[number]);
    ({ agent, csrf } = await signUp(api.app));
  });
  after(() => api.close());

  const refusal = async (
    res: request.Test,
    status: number,
    code: string,
    message: RegExp,
  ): Promise<void> => {
    const answer = await res.expect(status).expect('content-type', /json/);
    assert.equal(answer.body.error.code, code);
    assert.match(answer.body.error.message, message);
    assert.doesNotMatch(answer.text, /at .*\.ts:\d+/, 'no stack trace');
  };

  const signup = () => request(api.app).post('/v1/auth/signup');

  test('malformed JSON is 400 invalid_request', async () => {
    await refusal(
      signup().set('Content-Type', 'application/json').send('{"email": "a@b.co",'),
      400,
      'invalid_request',
      /not valid JSON/,
    );
  });

  test('an unknown field is refused by name, at any depth of the body', async () => {
    await refusal(
      signup().send({ email: freshEmail(), password: PASSWORD, admin: true }),
      400,
      'invalid_request',
      /unknown field "admin"/,
    );
    await refusal(
      signup()
        .set('Content-Type', 'application/json')
        .send(`{"email":"${freshEmail()}","password":"${PASSWORD}","__proto__":{"admin":true}}`),
      400,
      'invalid_request',
      /unknown field "__proto__"/,
    );
    await refusal(
      agent
        .post('/v1/keys')
        .set('X-CSRF-Token', csrf)
        .send({ name: 'k', secret: 'a secret of my choosing' }),
      400,
      'invalid_request',
      /unknown field "secret"/,
    );
  });

  test('a wrong type or a missing field is refused by name', async () => {
    await refusal(
      signup().send({ email: 42, password: PASSWORD }),
      400,
      'invalid_request',
      /^email must be a string$/,
    );
    await refusal(
      signup().send({ email: freshEmail(), password: null }),
      400,
      'invalid_request',
      /^password must be a string$/,
    );
    await refusal(
      signup().send({ email: freshEmail() }),
      400,
      'invalid_request',
      /^password is required$/,
    );
    await refusal(
      agent
        .post('/v1/nodes')
        .set('X-CSRF-Token', csrf)
        .send({ name: ['a'] }),
      400,
      'invalid_request',
      /^name must be a string$/,
    );
    await refusal(
      agent.post('/v1/nodes').set('X-CSRF-Token', csrf).send({ type: 'satellite' }),
      400,
      'invalid_request',
      /^type must be one of residential, datacenter, mobile$/,
    );
  });

  test('the body must be one JSON object', async () => {
    await refusal(
      signup().set('Content-Type', 'application/json').send('[1, 2]'),
      400,
      'invalid_request',
      /^the request body must be an object$/,
    );
    await refusal(
      signup().set('Content-Type', 'application/json').send('"text"'),
      400,
      'invalid_request',
      /not valid JSON/,
    );
    await refusal(signup(), 400, 'invalid_request', /request body is required/);
  });

  test('emails and passwords are held to their limits', async () => {
    for (const email of [
      'no-at-sign',
      'a@b',
      'a@@b.co',
      'a b@c.co',
      '.a@b.co',
      'a@-b.co',
      `${'a'.repeat(250)}@b.co`,
    ]) {
      await refusal(
        signup().send({ email, password: PASSWORD }),
        400,
        'invalid_request',
        /^email is not a valid email$|^email must be at most 254 characters$/,
      );
    }
    await refusal(
      signup().send({ email: freshEmail(), password: 'short' }),
      400,
      'invalid_request',
      /^password must be at least 10 characters$/,
    );
    await refusal(
      signup().send({ email: freshEmail(), password: 'p'.repeat(257) }),
      400,
      'invalid_request',
      /^password must be at most 256 characters$/,
    );
    // Characters, not bytes or UTF-16 units: ten emoji are ten characters.
    await signup()
      .send({ email: freshEmail(), password: '🔑'.repeat(10) })
      .expect(201);
  });

  test('names are bounded and free of control characters', async () => {
    await refusal(
      agent.post('/v1/keys').set('X-CSRF-Token', csrf).send({ name: 'a\nb' }),
      400,
      'invalid_request',
      /^name has characters that are not allowed/,
    );
    await refusal(
      agent
        .post('/v1/keys')
        .set('X-CSRF-Token', csrf)
        .send({ name: 'n'.repeat(101) }),
      400,
      'invalid_request',
      /^name must be at most 100 characters$/,
    );
  });

  test('a body over 64 KiB is 413 payload_too_large', async () => {
    await refusal(
      signup().send({ email: freshEmail(), password: 'x'.repeat(70_000) }),
      413,
      'payload_too_large',
      /too large/,
    );
  });

  test('a body that is not application/json is 415 (so no cross-site form can post one)', async () => {
    await refusal(
      signup().set('Content-Type', 'text/plain').send('{"email":"a@b.co","password":"0123456789"}'),
      415,
      'unsupported_media_type',
      /application\/json/,
    );
    await refusal(
      signup().type('form').send({ email: 'a@b.co', password: '0123456789' }),
      415,
      'unsupported_media_type',
      /application\/json/,
    );
  });

  test('authentication comes before the body is read', async () => {
    await refusal(
      request(api.app).post('/v1/keys').set('Content-Type', 'application/json').send('{oops'),
      401,
      'unauthorized',
      /Sign in/,
    );
  });

  test('a wrong method on a known path is 405 with Allow', async () => {
    const res = await request(api.app).get('/v1/auth/signup').expect(405);
    assert.equal(res.body.error.code, 'method_not_allowed');
    assert.equal(res.headers.allow, 'POST');
    const me = await request(api.app).delete('/v1/me').expect(405);
    assert.equal(me.headers.allow, 'GET, HEAD');
  });

  test('the accounts module refuses the same things when called directly', async () => {
    await assert.rejects(api.accounts.signup('not an email', PASSWORD), {
      code: 'invalid_request',
    });
    await assert.rejects(api.accounts.signup(freshEmail(), 'short'), { code: 'invalid_request' });
    assert.equal(await api.accounts.login('x'.repeat(300), PASSWORD), null);
  });
});

describe('the schemas and the accounts module agree', () => {
  const document = parseYaml(OPENAPI);
  const schemas = document.components.schemas;

  test('email, password and name limits are the same numbers on both sides', () => {
    assert.equal(schemas.Email.maxLength, EMAIL_MAX_LENGTH);
    assert.equal(schemas.SignupRequest.properties.password.minLength, PASSWORD_MIN_LENGTH);
    assert.equal(schemas.SignupRequest.properties.password.maxLength, PASSWORD_MAX_LENGTH);
    assert.equal(schemas.LoginRequest.properties.password.maxLength, PASSWORD_MAX_LENGTH);
    assert.equal(schemas.DisplayName.maxLength, NAME_MAX_LENGTH);
  });

  test('isEmailAddress takes ordinary addresses and refuses odd ones', () => {
    for (const good of ['ada@example.com', 'a.b+tag@mail.example.co.uk', 'x@xn--80ak6aa92e.com']) {
      assert.ok(isEmailAddress(good), good);
    }
    for (const bad of [
      '',
      '@example.com',
      'a@example',
      'a..b@example.com',
      'a@exa mple.com',
      '"a"@example.com',
      'a@[127.0.0.1]',
      'ä@example.com',
    ]) {
      assert.ok(!isEmailAddress(bad), bad);
    }
  });

  test('a schema keyword the validator does not enforce stops start-up', () => {
    assert.throws(
      () =>
        createBodyValidator({
          components: { schemas: { Odd: { type: 'string', multipleOf: 2 } } },
        }),
      /multipleOf is not supported/,
    );
    assert.throws(
      () =>
        createBodyValidator({
          components: { schemas: { Odd: { type: 'string', format: 'uuid' } } },
        }),
      /unsupported format uuid/,
    );
  });
});
