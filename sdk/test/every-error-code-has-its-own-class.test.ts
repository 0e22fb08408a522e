import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { parse } from 'yaml';
import { errorFor, IPColaError, isErrorCode, QuotaExhaustedError } from '../src/errors.ts';

test('every code of the API document makes an error of its own class, named after it', async () => {
  const doc = parse(await readFile(new URL('../../openapi/openapi.yaml', import.meta.url), 'utf8'));
  const codes: string[] = doc.components.schemas.ErrorCode.enum;
  const names = new Set<string>();
  for (const code of codes) {
    assert.ok(isErrorCode(code), code);
    const error = errorFor(code, 'm', { status: 402, requestId: 'r1' });
    assert.ok(error instanceof IPColaError);
    assert.equal(error.code, code);
    assert.equal(error.status, 402);
    assert.equal(error.requestId, 'r1');
    const camel = code.replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
    assert.equal(error.name, camel.endsWith('Error') ? camel : `${camel}Error`);
    names.add(error.name);
  }
  assert.equal(names.size, codes.length);
  assert.ok(errorFor('quota_exhausted', 'm') instanceof QuotaExhaustedError);
  assert.equal(isErrorCode('toString'), false);
  assert.equal(isErrorCode('nope'), false);
});
