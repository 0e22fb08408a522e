/**
 * Query and path parameters of /v1 are checked against the OpenAPI document on the real
 * server: undeclared ones, wrong types, values outside the document's ranges, enums,
 * patterns and formats, and repeated ones are invalid_request, naming the parameter.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

describe('query and path parameters are checked against the document', () => {
  let dataDir: string;
  let server: ServerProcess;
  let cookie = '';
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-parameters-'));
    server = await startServer(serverEnv({ DATA_DIR: dataDir }));
    const signup = await fetch(`http://127.0.0.1:${server.ports.api}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'params@example.com', password: 'a long enough password' }),
    });
    cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  const get = async (pathname: string) => {
    const answer = await fetch(`http://127.0.0.1:${server.ports.api}${pathname}`, {
      headers: { cookie },
    });
    const body = (await answer.json()) as { error?: { code: string; message: string } };
    return { status: answer.status, error: body.error };
  };

  test('each refusal names the parameter and what the document asks of it', async () => {
    const cases: Array<[string, RegExp]> = [
      ['/v1/keys?limit=abc', /limit must be an integer/],
      ['/v1/keys?limit=0', /limit/],
      ['/v1/keys?limit=501', /limit/],
      ['/v1/keys?colour=blue', /unknown query parameter colour/],
      ['/v1/keys?limit=1&limit=2', /limit must be given once/],
      ['/v1/usage?granularity=week', /granularity must be one of hour, day/],
      ['/v1/usage?from=2026-11-01', /from/],
      ['/v1/usage?to=yesterday', /to/],
      ['/v1/usage/export.csv?limit=10', /unknown query parameter limit/],
      [`/v1/keys/${'a'.repeat(65)}`, /id/],
    ];
    for (const [pathname, message] of cases) {
      const { status, error } = await get(pathname);
      assert.equal(status, 400, pathname);
      assert.equal(error?.code, 'invalid_request', pathname);
      assert.match(error?.message ?? '', message, pathname);
    }
  });

  test('well-formed parameters pass through to the handler', async () => {
    assert.equal((await get('/v1/keys?limit=500')).status, 200);
    assert.equal(
      (await get('/v1/usage?granularity=day&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z'))
        .status,
      200,
    );
    assert.equal((await get('/v1/keys/nosuchkey')).status, 404);
  });
});
