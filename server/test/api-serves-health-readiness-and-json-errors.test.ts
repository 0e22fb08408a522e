import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { pinoHttp } from 'pino-http';
import request from 'supertest';
import { parse as parseYaml } from 'yaml';
import { apiErrorHandler, createApiApp, type Dependency } from '../src/api/index.ts';
import { ipcolaError } from '../src/errors/index.ts';
import { createLogger } from '../src/log/index.ts';
import {
  createMemoryHotState,
  type Database,
  type HotState,
  openPglite,
} from '../src/store/index.ts';

const OPENAPI = await readFile(new URL('../../openapi/openapi.yaml', import.meta.url), 'utf8');

describe('API basics', () => {
  let db: Database;
  let hot: HotState;
  let logged: string[];
  let app: express.Express;

  before(async () => {
    db = await openPglite(null);
    hot = createMemoryHotState();
    logged = [];
    const sink = { write: (line: string) => logged.push(line) } as unknown as NodeJS.WritableStream;
    app = createApiApp({
      logger: createLogger('debug', sink),
      dependencies: { database: db, hot_state: hot },
      openapiDocument: OPENAPI,
    });
  });
  after(async () => {
    await hot.close();
    await db.close();
  });

  test('/healthz answers ok', async () => {
    const res = await request(app).get('/healthz').expect(200).expect('content-type', /json/);
    assert.deepEqual(res.body, { status: 'ok' });
  });

  test('/readyz reports each dependency with its engine', async () => {
    const res = await request(app).get('/readyz').expect(200);
    assert.equal(res.body.status, 'ready');
    assert.equal(res.body.checks.database.status, 'up');
    assert.equal(res.body.checks.database.engine, 'pglite');
    assert.equal(res.body.checks.hot_state.status, 'up');
    assert.equal(res.body.checks.hot_state.engine, 'memory');
    assert.equal(typeof res.body.checks.database.latency_ms, 'number');
  });

  test('/openapi.yaml serves the OpenAPI 3.1 document describing these paths', async () => {
    const res = await request(app).get('/openapi.yaml').expect(200).expect('content-type', /yaml/);
    const document = parseYaml(res.text);
    assert.equal(document.openapi, '3.1.0');
    for (const path of ['/healthz', '/readyz', '/openapi.yaml'])
      assert.ok(document.paths[path], path);
  });

  test('an unknown path is a JSON not_found error', async () => {
    const res = await request(app)
      .get('/v1/nothing-here')
      .expect(404)
      .expect('content-type', /json/);
    assert.deepEqual(res.body, { error: { code: 'not_found', message: 'No such resource' } });
  });

  test('every answer carries a request id, and a sane offered one is kept', async () => {
    const generated = await request(app).get('/healthz');
    assert.match(generated.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    const kept = await request(app).get('/healthz').set('X-Request-Id', 'trace-123');
    assert.equal(kept.headers['x-request-id'], 'trace-123');
    const replaced = await request(app).get('/healthz').set('X-Request-Id', 'bad id\twith tab');
    assert.notEqual(replaced.headers['x-request-id'], 'bad id\twith tab');
  });

  test('logs are JSON lines with the request id and without credentials', async () => {
    logged.length = 0;
    await request(app)
      .get('/v1/secret-probe')
      .set('X-Request-Id', 'req-log-1')
      .set('Authorization', 'Bearer abc.supersecret')
      .set('Cookie', 'sid=topsecret');
    const lines = logged.map((line) => JSON.parse(line));
    const entry = lines.find((line) => line.req?.id === 'req-log-1');
    assert.ok(entry, 'the request was logged with its id');
    assert.equal(entry.res.statusCode, 404);
    const text = logged.join('');
    assert.doesNotMatch(text, /supersecret|topsecret/);
  });

  test('the header x-powered-by is not sent', async () => {
    const res = await request(app).get('/healthz');
    assert.equal(res.headers['x-powered-by'], undefined);
  });
});

describe('API errors', () => {
  // Routes as later issues' routers will add them, in front of the API's error handler.
  const build = (mount: (app: express.Express) => void) => {
    const logged: string[] = [];
    const sink = { write: (line: string) => logged.push(line) } as unknown as NodeJS.WritableStream;
    const app = express();
    app.use(pinoHttp({ logger: createLogger('info', sink) }));
    mount(app);
    app.use(apiErrorHandler);
    return { app, logged };
  };

  test('an unexpected exception is a 500 internal_error with no stack or message leaked', async () => {
    const { app, logged } = build((outer) => {
      outer.get('/boom', () => {
        throw new Error('database password is hunter2 at /srv/x.ts:12');
      });
    });
    const res = await request(app).get('/boom').expect(500);
    assert.deepEqual(res.body, { error: { code: 'internal_error', message: 'Internal error' } });
    assert.doesNotMatch(res.text, /hunter2|\.ts:|at /);
    const entry = logged.map((line) => JSON.parse(line)).find((line) => line.err);
    assert.match(entry?.err?.message ?? '', /hunter2/, 'the cause stays in the log for operators');
  });

  test('a catalogue error keeps its code and status', async () => {
    const { app } = build((outer) => {
      outer.get('/limited', () => {
        throw ipcolaError('rate_limited', 'slow down');
      });
    });
    const res = await request(app).get('/limited').expect(429);
    assert.deepEqual(res.body, { error: { code: 'rate_limited', message: 'slow down' } });
  });

  test('malformed and oversized JSON bodies are invalid_request and payload_too_large', async () => {
    const { app } = build((outer) => {
      outer.post('/echo', express.json({ limit: '1kb' }), (req, res) => {
        res.json(req.body);
      });
    });
    const malformed = await request(app)
      .post('/echo')
      .set('Content-Type', 'application/json')
      .send('{"a": ')
      .expect(400);
    assert.equal(malformed.body.error.code, 'invalid_request');
    const oversized = await request(app)
      .post('/echo')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ a: 'x'.repeat(5000) }))
      .expect(413);
    assert.equal(oversized.body.error.code, 'payload_too_large');
  });

  test('/readyz is 503 and names the dependency that is down', async () => {
    const down: Dependency = {
      engine: 'redis',
      ping: () =>
        Promise.reject(
          Object.assign(new Error('connect ECONNREFUSED redis://u:pw@h'), { code: 'ECONNREFUSED' }),
        ),
    };
    const app = createApiApp({
      logger: createLogger('silent'),
      dependencies: { database: { engine: 'postgres', ping: async () => {} }, hot_state: down },
      openapiDocument: OPENAPI,
    });
    const res = await request(app).get('/readyz').expect(503);
    assert.equal(res.body.status, 'not_ready');
    assert.equal(res.body.checks.database.status, 'up');
    assert.equal(res.body.checks.hot_state.status, 'down');
    assert.equal(res.body.checks.hot_state.error, 'ECONNREFUSED');
    assert.doesNotMatch(res.text, /pw@/);
  });

  test('/readyz does not hang on a dependency that never answers', async () => {
    const app = createApiApp({
      logger: createLogger('silent'),
      dependencies: {
        database: { engine: 'postgres', ping: () => new Promise(() => {}) },
        hot_state: { engine: 'memory', ping: async () => {} },
      },
      openapiDocument: OPENAPI,
    });
    const res = await request(app).get('/readyz').expect(503);
    assert.equal(res.body.checks.database.error, 'timed out');
  });
});

describe('readiness with real engines that go down', () => {
  test('a closed database and closed hot state make /readyz 503', async () => {
    const db = await openPglite(null);
    const hot = createMemoryHotState();
    const app = createApiApp({
      logger: createLogger('silent'),
      dependencies: { database: db, hot_state: hot },
      openapiDocument: OPENAPI,
    });
    await request(app).get('/readyz').expect(200);
    await db.close();
    const dbDown = await request(app).get('/readyz').expect(503);
    assert.equal(dbDown.body.checks.database.status, 'down');
    assert.equal(dbDown.body.checks.hot_state.status, 'up');
    await hot.close();
    const bothDown = await request(app).get('/readyz').expect(503);
    assert.equal(bothDown.body.checks.hot_state.status, 'down');
  });
});
