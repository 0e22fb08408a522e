/**
 * The answer check: a JSON answer that does not match the OpenAPI document's schema for
 * its operation and status is reported, and in strict mode turned into internal_error;
 * matching answers and undocumented routes pass untouched. Real express, real HTTP.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import express from 'express';
import request from 'supertest';
import { createAnswerCheck } from '../../src/api/parameters.ts';
import { createBodyValidator } from '../../src/api/validate.ts';

const document = {
  paths: {
    '/v1/things/{id}': {
      get: {
        responses: {
          '200': {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['id', 'size'],
                  additionalProperties: false,
                  properties: { id: { type: 'string' }, size: { type: 'integer', minimum: 0 } },
                },
              },
            },
          },
        },
      },
    },
  },
  components: { schemas: {} },
};

function app(strict: boolean, mismatches: string[]) {
  const validator = createBodyValidator(document);
  const server = express();
  server.use(
    '/v1',
    createAnswerCheck(document, validator, {
      strict,
      onMismatch: (where, failure) => mismatches.push(`${where}: ${failure}`),
    }),
  );
  server.get('/v1/things/:id', (req, res) => {
    res.json(req.params.id === 'bad' ? { id: 'bad', size: -1 } : { id: req.params.id, size: 3 });
  });
  server.get('/v1/undocumented', (_req, res) => {
    res.json({ anything: true });
  });
  return server;
}

test('a matching answer passes, a mismatch becomes internal_error in strict mode', async () => {
  const mismatches: string[] = [];
  const strict = app(true, mismatches);
  const good = await request(strict).get('/v1/things/a1');
  assert.equal(good.status, 200);
  assert.deepEqual(good.body, { id: 'a1', size: 3 });
  const bad = await request(strict).get('/v1/things/bad');
  assert.equal(bad.status, 500);
  assert.equal(bad.body.error.code, 'internal_error');
  assert.equal(mismatches.length, 1);
  assert.match(mismatches[0] ?? '', /GET \/v1\/things\/bad 200: answer.size/);
  const other = await request(strict).get('/v1/undocumented');
  assert.deepEqual(other.body, { anything: true });
});

test('outside strict mode a mismatch is reported and the answer still goes out', async () => {
  const mismatches: string[] = [];
  const lenient = app(false, mismatches);
  const bad = await request(lenient).get('/v1/things/bad');
  assert.equal(bad.status, 200);
  assert.deepEqual(bad.body, { id: 'bad', size: -1 });
  assert.equal(mismatches.length, 1);
});
