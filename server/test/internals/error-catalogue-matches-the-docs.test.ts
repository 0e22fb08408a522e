import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { TUNNEL_ERROR_CODES, TUNNEL_ERRORS } from '@ipcola/shared/tunnel-errors';
import { parse as parseYaml } from 'yaml';
import { API_ERRORS, PROXY_ERRORS } from '../../src/errors/index.ts';

const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
const openapi = parseYaml(
  await readFile(new URL('../../../openapi/openapi.yaml', import.meta.url), 'utf8'),
);

/** Rows of the README's proxy error table: | `code` | HTTP | SOCKS5 reply | when | */
function documentedProxyErrors(): Map<string, { status: number; socks: string }> {
  const rows = new Map<string, { status: number; socks: string }>();
  for (const line of readme.split('\n')) {
    const match = /^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})[^|]*\|\s*([^|]*?)\s*\|/.exec(line);
    if (match)
      rows.set(match[1] as string, {
        status: Number(match[2]),
        socks: (match[3] as string).trim(),
      });
  }
  return rows;
}

test('the README error table lists exactly the catalogue codes, with the same HTTP status and SOCKS reply', () => {
  const documented = documentedProxyErrors();
  assert.deepEqual([...documented.keys()].sort(), Object.keys(PROXY_ERRORS).sort());
  for (const [code, spec] of Object.entries(PROXY_ERRORS)) {
    const row = documented.get(code);
    assert.equal(row?.status, spec.status, `${code} HTTP status`);
    const socks =
      spec.socks === 'auth'
        ? 'auth failure'
        : spec.socks === 'close'
          ? '(connection closed)'
          : `0x${spec.socks.toString(16).padStart(2, '0')}`;
    assert.equal(row?.socks, socks, `${code} SOCKS reply`);
  }
});

test('the OpenAPI ErrorCode enum lists exactly the catalogue codes', () => {
  const documented: string[] = openapi.components.schemas.ErrorCode.enum;
  assert.deepEqual(
    [...documented].sort(),
    [...Object.keys(PROXY_ERRORS), ...Object.keys(API_ERRORS)].sort(),
  );
});

test('retryable codes are exactly the ones the README marks for Retry-After', () => {
  const retryable = Object.entries(PROXY_ERRORS)
    .filter(([, spec]) => spec.retryable)
    .map(([code]) => code)
    .sort();
  assert.deepEqual(retryable, [
    'exit_failed',
    'no_exit_available',
    'rate_limited',
    'service_unavailable',
  ]);
  assert.match(
    readme,
    /Retryable refusals \(`no_exit_available`, `rate_limited`, `exit_failed`, `service_unavailable`\)/,
  );
});

test('the codes an exit answers a stream with read the same in the agent and the server catalogue', () => {
  assert.deepEqual([...TUNNEL_ERROR_CODES].sort(), [
    'exit_failed',
    'target_forbidden',
    'target_timeout',
    'target_unreachable',
  ]);
  for (const code of TUNNEL_ERROR_CODES) {
    assert.deepEqual(PROXY_ERRORS[code], TUNNEL_ERRORS[code], code);
  }
});
