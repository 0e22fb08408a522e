import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeHello,
  formatAuthority,
  HELLO_MAX_EXIT_IPS,
  HELLO_MAX_LENGTH,
  type NodeHello,
  parseAuthority,
  parseHello,
  validateHello,
} from '@ipcola/shared/protocol';
import {
  isTunnelError,
  TUNNEL_ERROR_CODES,
  tunnelCodeOf,
  tunnelError,
  tunnelStatusOf,
} from '@ipcola/shared/tunnel-errors';

const HELLO: NodeHello = {
  exitIps: ['203.0.113.7', '2001:db8::7'],
  country: 'us',
  region: 'new_york',
  city: 'new_york',
  asn: 64_500,
  type: 'residential',
  maxStreams: 100,
  agentVersion: '1.2.3-beta.1',
};

function reason(value: unknown): string {
  const result = validateHello(value);
  assert.equal(result.ok, false, `expected a refusal for ${JSON.stringify(value)}`);
  return result.ok ? '' : result.reason;
}

describe('the hello', () => {
  test('a complete hello is accepted as it is', () => {
    assert.deepEqual(parseHello(JSON.stringify(HELLO)), { ok: true, hello: HELLO });
  });

  test('it is normalised: lowercase country, canonical exit IPs', () => {
    const result = validateHello({ ...HELLO, country: 'US', exitIps: ['0:0:0::1', '2001:DB8::7'] });
    assert.ok(result.ok);
    assert.equal(result.hello.country, 'us');
    assert.deepEqual(result.hello.exitIps, ['::1', '2001:db8::7']);
  });

  test('location fields are optional; unknown fields are dropped, not refused', () => {
    const minimal = {
      exitIps: ['192.0.2.1'],
      type: 'datacenter',
      maxStreams: 1,
      agentVersion: '1',
    };
    assert.deepEqual(validateHello({ ...minimal, futureField: { nested: true } }), {
      ok: true,
      hello: minimal,
    });
  });

  test('exit IPs: an array of 1 to 256 distinct addresses without zone ids', () => {
    assert.match(reason({ ...HELLO, exitIps: '192.0.2.1' }), /exitIps must be an array/);
    assert.match(reason({ ...HELLO, exitIps: [] }), /must not be empty/);
    const many = Array.from(
      { length: HELLO_MAX_EXIT_IPS + 1 },
      (_, i) => `10.0.${i >> 8}.${i & 255}`,
    );
    assert.match(reason({ ...HELLO, exitIps: many }), /at most 256/);
    assert.ok(validateHello({ ...HELLO, exitIps: many.slice(0, HELLO_MAX_EXIT_IPS) }).ok);
    for (const bad of ['example.com', '256.1.1.1', '01.2.3.4', 'fe80::1%eth0', '', 7, null]) {
      assert.match(reason({ ...HELLO, exitIps: ['192.0.2.1', bad] }), /exitIps\[1\] is not an IP/);
    }
    assert.match(reason({ ...HELLO, exitIps: ['::1', '0::1'] }), /exitIps\[1\] is a duplicate/);
  });

  test('type, maxStreams and agentVersion are required and checked', () => {
    assert.match(reason({ ...HELLO, type: 'satellite' }), /type must be one of/);
    assert.match(reason({ ...HELLO, type: undefined }), /type/);
    for (const bad of [0, 10_001, 1.5, '5', undefined]) {
      assert.match(reason({ ...HELLO, maxStreams: bad }), /maxStreams must be an integer/);
    }
    for (const bad of ['', 'has space', 'x'.repeat(65), 'é', undefined]) {
      assert.match(reason({ ...HELLO, agentVersion: bad }), /agentVersion/);
    }
  });

  test('location: two-letter country, slug region and city, positive 32-bit asn', () => {
    for (const bad of ['usa', 'u1', '', null, 1]) {
      assert.match(reason({ ...HELLO, country: bad }), /country/);
    }
    // Two letters are not enough: the gateway targets only codes ISO assigned.
    for (const bad of ['xx', 'XX', 'uk', 'eu']) {
      assert.match(reason({ ...HELLO, country: bad }), /country .*ISO 3166-1/);
    }
    assert.match(reason({ ...HELLO, country: 'uk' }), /'gb'/);
    for (const bad of ['New York', 'new-york', 'x'.repeat(65), '']) {
      assert.match(reason({ ...HELLO, region: bad }), /region/);
      assert.match(reason({ ...HELLO, city: bad }), /city/);
    }
    for (const bad of [0, -1, 2 ** 32, 1.5, '64500']) {
      assert.match(reason({ ...HELLO, asn: bad }), /asn/);
    }
  });

  test('the header text must be a JSON object of bounded length', () => {
    assert.deepEqual(parseHello(''), { ok: false, reason: 'hello is empty' });
    assert.deepEqual(parseHello('{"a":'), { ok: false, reason: 'hello is not JSON' });
    assert.deepEqual(parseHello('[]'), { ok: false, reason: 'hello must be a JSON object' });
    assert.deepEqual(parseHello('null'), { ok: false, reason: 'hello must be a JSON object' });
    const tooLong = parseHello(' '.repeat(HELLO_MAX_LENGTH + 1));
    assert.deepEqual(tooLong, {
      ok: false,
      reason: `hello is longer than ${HELLO_MAX_LENGTH} characters`,
    });
  });

  test('encodeHello gives ASCII JSON that parses back, and refuses what the hub would', () => {
    const encoded = encodeHello(HELLO);
    assert.match(encoded, /^[\x20-\x7e]+$/);
    assert.deepEqual(parseHello(encoded), { ok: true, hello: HELLO });
    assert.throws(() => encodeHello({ ...HELLO, maxStreams: 0 }), TypeError);
  });
});

describe('host:port authorities', () => {
  test('names, IPv4 and bracketed IPv6 parse', () => {
    assert.deepEqual(parseAuthority('example.com:443'), { host: 'example.com', port: 443 });
    assert.deepEqual(parseAuthority('sub_domain.example.com.:8080'), {
      host: 'sub_domain.example.com.',
      port: 8080,
    });
    assert.deepEqual(parseAuthority('192.0.2.1:80'), { host: '192.0.2.1', port: 80 });
    assert.deepEqual(parseAuthority('[2001:db8::1]:65535'), { host: '2001:db8::1', port: 65_535 });
  });

  test('anything else is refused', () => {
    for (const bad of [
      'example.com',
      'example.com:',
      'example.com:0',
      'example.com:65536',
      'example.com:+80',
      'example.com:8o',
      '2001:db8::1:443',
      '[2001:db8::1]443',
      '[192.0.2.1]:80',
      '[fe80::1%eth0]:80',
      'bad host:80',
      'a..b:80',
      '-a.example:80',
      `${'a'.repeat(64)}.example:80`,
      `${'a.'.repeat(127)}a:80`,
      ':80',
    ]) {
      assert.equal(parseAuthority(bad), null, bad);
    }
  });

  test('formatAuthority brackets IPv6 and round-trips', () => {
    assert.equal(formatAuthority('2001:db8::1', 443), '[2001:db8::1]:443');
    assert.equal(formatAuthority('example.com', 80), 'example.com:80');
    for (const [host, port] of [
      ['2001:db8::1', 1],
      ['example.com', 443],
      ['192.0.2.1', 8080],
    ] as const) {
      assert.deepEqual(parseAuthority(formatAuthority(host, port)), { host, port });
    }
  });
});

describe('tunnel error codes', () => {
  test('match the catalogue statuses', () => {
    assert.deepEqual([...TUNNEL_ERROR_CODES].sort(), [
      'exit_failed',
      'target_forbidden',
      'target_timeout',
      'target_unreachable',
    ]);
    assert.deepEqual(Object.fromEntries(TUNNEL_ERROR_CODES.map((c) => [c, tunnelStatusOf(c)])), {
      target_forbidden: 403,
      target_unreachable: 502,
      target_timeout: 504,
      exit_failed: 502,
    });
  });

  test('errors are values with a code; anything without one is exit_failed', () => {
    const error = tunnelError('target_timeout', 'slow');
    assert.ok(isTunnelError(error));
    assert.equal(error.code, 'target_timeout');
    assert.equal(tunnelCodeOf(error), 'target_timeout');
    assert.equal(tunnelCodeOf({ code: 'target_forbidden' }), 'target_forbidden');
    assert.equal(
      tunnelCodeOf(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })),
      'exit_failed',
    );
    assert.equal(tunnelCodeOf('target_forbidden'), 'exit_failed');
    assert.equal(tunnelCodeOf(undefined), 'exit_failed');
  });
});
