/**
 * How a refusal's code is read: the gateway's `X-IPCola-Error`, else the `ipcola` member of
 * `Proxy-Status`, never a CDN's member or an API code, and the status alone only when the
 * headers are gone (a CONNECT refusal through another proxy).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ExitFailedError,
  NoExitAvailableError,
  QuotaExhaustedError,
  SessionExitGoneError,
} from '../src/errors.ts';
import { namedCode, refusalError } from '../src/proxy/refusal.ts';

describe("refusals are read from the gateway's own headers", () => {
  it('takes X-IPCola-Error first, then the ipcola member of Proxy-Status', () => {
    assert.equal(
      namedCode({
        'x-ipcola-error': 'quota_exhausted',
        'proxy-status': 'ipcola; error=http_request_denied; details="auth_failed"',
      }),
      'quota_exhausted',
    );
    assert.equal(
      namedCode({
        'proxy-status':
          'cdn; error=destination_unavailable; details="x", ipcola; error=destination_not_found; details="no_exit_available"',
      }),
      'no_exit_available',
    );
  });

  it("ignores a CDN's Proxy-Status and codes that are not the gateway's", () => {
    assert.equal(
      namedCode({ 'proxy-status': 'cdn; error=proxy_internal_error; details="internal_error"' }),
      undefined,
    );
    assert.equal(namedCode({ 'x-ipcola-error': 'not_found' }), undefined);
    assert.equal(namedCode({ 'x-ipcola-error': 'whatever' }), undefined);
    assert.equal(namedCode({}), undefined);
  });

  it('keeps the status and Retry-After, and says what to do about a gone session', () => {
    const gone = refusalError(
      503,
      { 'x-ipcola-error': 'session_exit_gone' },
      'example.com:443',
      'CONNECT',
    );
    assert.ok(gone instanceof SessionExitGoneError);
    assert.equal(gone.status, 503);
    assert.match(gone.message, /CONNECT to example\.com:443 .*rotate/);
    const busy = refusalError(
      503,
      { 'x-ipcola-error': 'no_exit_available', 'retry-after': '7' },
      't',
      'request',
    );
    assert.ok(busy instanceof NoExitAvailableError);
    assert.equal(busy.retryAfter, 7);
    assert.equal(
      refusalError(503, { 'retry-after': 'soon' }, 't', 'request').retryAfter,
      undefined,
    );
  });

  it('falls back on the status alone when the headers did not survive', () => {
    assert.ok(refusalError(402, {}, 't', 'CONNECT') instanceof QuotaExhaustedError);
    assert.ok(refusalError(418, {}, 't', 'CONNECT') instanceof ExitFailedError);
  });
});
