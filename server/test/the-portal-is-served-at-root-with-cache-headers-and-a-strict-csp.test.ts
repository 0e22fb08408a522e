/**
 * The portal router: client-side routes answer index.html with a fresh style nonce in its
 * Content-Security-Policy and never cached; hashed assets are cached for good; the API's
 * paths pass through untouched; without a build, `/` says how to make one.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import request from 'supertest';
import { apiErrorHandler } from '../src/api/index.ts';
import { ipcolaError } from '../src/errors/index.ts';
import { portalRouter } from '../src/portal/index.ts';

const PAGE = `<!doctype html><html><head><meta name="csp-nonce" content="__CSP_NONCE__" />
<script type="module" src="/assets/index-abc123.js"></script></head><body><div id="root"></div></body></html>`;

/** The router as the API mounts it: after the API's routes, before its JSON 404. */
function appServing(directory: string): express.Express {
  const app = express();
  app.use(portalRouter(directory));
  app.use((_req, _res, next) => next(ipcolaError('not_found')));
  app.use(apiErrorHandler);
  return app;
}

describe('the portal at /', () => {
  let built: string;
  let empty: string;
  before(async () => {
    built = await mkdtemp(path.join(tmpdir(), 'ipcola-portal-dist-'));
    empty = await mkdtemp(path.join(tmpdir(), 'ipcola-portal-none-'));
    await mkdir(path.join(built, 'assets'));
    await writeFile(path.join(built, 'index.html'), PAGE);
    await writeFile(path.join(built, 'assets', 'index-abc123.js'), 'console.log(1);\n'.repeat(500));
  });
  after(async () => {
    await rm(built, { recursive: true, force: true });
    await rm(empty, { recursive: true, force: true });
  });

  test('every client-side route is index.html, never cached, under a strict policy with a fresh nonce', async () => {
    const app = appServing(built);
    const nonces = new Set<string>();
    for (const route of ['/', '/keys', '/billing?checkout=succeeded&session_id=cs_1', '/a/b']) {
      const res = await request(app)
        .get(route)
        .expect(200)
        .expect('content-type', /text\/html/);
      assert.equal(res.headers['cache-control'], 'no-cache');
      const policy = res.headers['content-security-policy'] ?? '';
      const nonce = /'nonce-([^']+)'/.exec(policy)?.[1] ?? '';
      assert.ok(nonce.length >= 16, policy);
      assert.ok(res.text.includes(`content="${nonce}"`), 'the page carries its own nonce');
      assert.ok(!res.text.includes('__CSP_NONCE__'));
      nonces.add(nonce);
      const directives = new Map(
        policy.split(/;\s*/).map((directive) => {
          const [name = '', ...values] = directive.split(' ');
          return [name, values.join(' ')];
        }),
      );
      assert.equal(directives.get('default-src'), "'none'");
      assert.equal(directives.get('script-src'), "'self'");
      assert.equal(directives.get('style-src'), `'self' 'nonce-${nonce}'`);
      assert.equal(directives.get('frame-ancestors'), "'none'");
      assert.equal(directives.get('base-uri'), "'none'");
      assert.equal(directives.get('connect-src'), "'self'");
    }
    assert.equal(nonces.size, 4, 'a new nonce for each page served');
  });

  test('hashed assets are compressed and cached for a year as immutable; a missing one is a JSON 404', async () => {
    const app = appServing(built);
    const res = await request(app).get('/assets/index-abc123.js').expect(200);
    assert.match(res.headers['content-type'] ?? '', /javascript/);
    assert.match(res.headers['cache-control'] ?? '', /max-age=31536000/);
    assert.match(res.headers['cache-control'] ?? '', /immutable/);
    const compressed = await request(app)
      .get('/assets/index-abc123.js')
      .set('accept-encoding', 'gzip')
      .expect(200);
    assert.equal(compressed.headers['content-encoding'], 'gzip');
    const missing = await request(app).get('/assets/index-gone.js').expect(404);
    assert.equal(missing.body.error.code, 'not_found');
  });

  test("the API's paths, other methods and file names pass through to the API", async () => {
    const app = appServing(built);
    for (const route of [
      '/v1',
      '/v1/nothing-here',
      '/docs',
      '/openapi.yaml',
      '/healthz',
      '/readyz',
      '/metrics',
      '/robots.txt',
    ]) {
      const res = await request(app).get(route).expect(404);
      assert.equal(res.body.error.code, 'not_found', route);
    }
    await request(app).post('/keys').expect(404);
  });

  test('without a build, / answers 503 saying how to build the portal', async () => {
    const res = await request(appServing(empty)).get('/').expect(503);
    assert.match(res.headers['content-type'] ?? '', /text\/plain/);
    assert.match(res.text, /npm run build --workspace @ipcola\/portal/);
    assert.match(res.text, /\/docs/);
  });
});
