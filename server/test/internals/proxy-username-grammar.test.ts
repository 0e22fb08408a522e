import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ErrorCode, isIPColaError } from '../../src/errors/index.ts';
import {
  formatProxyUsername,
  type ProxyCredentials,
  parseBasicProxyAuthorization,
  parseProxyUsername,
  type Targeting,
} from '../../src/gateway/credentials.ts';

const KEY = 'k3y9abc';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Asserts `fn` throws an IPColaError with `code`, and a message matching `message` if given. */
function assertRefused(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isIPColaError(error), `expected an IPColaError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  });
}

function basic(credentials: string): string {
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
}

describe('parseProxyUsername: key id', () => {
  test('a bare key id gives no targeting and no session', () => {
    assert.deepEqual(parseProxyUsername(KEY), { keyId: KEY, targeting: {}, session: null });
  });

  test('key ids of 1 and 32 characters are accepted', () => {
    assert.equal(parseProxyUsername('a').keyId, 'a');
    const long = 'a1'.repeat(16);
    assert.equal(parseProxyUsername(long).keyId, long);
  });

  test('a key id of 33 characters is auth_failed', () => {
    assertRefused(() => parseProxyUsername('a'.repeat(33)), 'auth_failed', /key id/);
  });

  test('an empty key id is auth_failed', () => {
    assertRefused(() => parseProxyUsername(''), 'auth_failed', /key id/);
    assertRefused(() => parseProxyUsername('-country-us'), 'auth_failed', /key id/);
  });

  test('a key id with uppercase letters is auth_failed', () => {
    assertRefused(() => parseProxyUsername('KEYID'), 'auth_failed', /key id/);
    assertRefused(() => parseProxyUsername('keyId-country-us'), 'auth_failed');
  });

  test('a key id holding a dot (a whole key pasted as username) is auth_failed', () => {
    assertRefused(() => parseProxyUsername('abc.secret'), 'auth_failed', /key id/);
  });

  test('a key id with other punctuation is auth_failed', () => {
    for (const id of ['abc_1', 'abc+1', 'abc:1', 'ab/c']) {
      assertRefused(() => parseProxyUsername(id), 'auth_failed');
    }
  });
});

describe('parseProxyUsername: the README examples and ordering', () => {
  test('the full example KEYID-country-us-session-job42-ttl-10m parses', () => {
    assert.deepEqual(parseProxyUsername(`${KEY}-country-us-session-job42-ttl-10m`), {
      keyId: KEY,
      targeting: { country: 'us' },
      session: { id: 'job42', ttlMs: 10 * MINUTE },
    });
  });

  test('KEYID-country-de parses to a country and no session', () => {
    assert.deepEqual(parseProxyUsername(`${KEY}-country-de`), {
      keyId: KEY,
      targeting: { country: 'de' },
      session: null,
    });
  });

  test('every parameter together parses', () => {
    const username = `${KEY}-country-us-region-california-city-los_angeles-asn-7922-type-residential-session-Job_42-ttl-2h`;
    assert.deepEqual(parseProxyUsername(username), {
      keyId: KEY,
      targeting: {
        country: 'us',
        region: 'california',
        city: 'los_angeles',
        asn: 7922,
        type: 'residential',
      },
      session: { id: 'Job_42', ttlMs: 2 * HOUR },
    });
  });

  test('parameters may come in any order', () => {
    const expected = parseProxyUsername(`${KEY}-country-us-city-boston-session-s1-ttl-30s`);
    for (const username of [
      `${KEY}-ttl-30s-session-s1-city-boston-country-us`,
      `${KEY}-city-boston-ttl-30s-country-us-session-s1`,
      `${KEY}-session-s1-country-us-ttl-30s-city-boston`,
    ]) {
      assert.deepEqual(parseProxyUsername(username), expected, username);
    }
    assert.deepEqual(expected.targeting, { country: 'us', city: 'boston' });
    assert.deepEqual(expected.session, { id: 's1', ttlMs: 30_000 });
  });

  test('parameter names are case-insensitive', () => {
    assert.deepEqual(
      parseProxyUsername(`${KEY}-COUNTRY-us-City-paris-aSn-3215-TYPE-mobile-Session-x-TTL-5m`),
      {
        keyId: KEY,
        targeting: { country: 'us', city: 'paris', asn: 3215, type: 'mobile' },
        session: { id: 'x', ttlMs: 5 * MINUTE },
      },
    );
  });
});

describe('parseProxyUsername: country', () => {
  test('country is case-insensitive and normalised to lowercase', () => {
    for (const raw of ['DE', 'de', 'De', 'dE']) {
      assert.equal(parseProxyUsername(`${KEY}-country-${raw}`).targeting.country, 'de');
    }
  });

  test('assigned ISO 3166-1 alpha-2 codes are accepted', () => {
    for (const code of ['gb', 'us', 'jp', 'br', 'za', 'aq', 'ax', 'ss', 'sx', 'bq', 'cw', 'zw']) {
      assert.equal(parseProxyUsername(`${KEY}-country-${code}`).targeting.country, code);
    }
  });

  test("'uk' is refused with a hint to use 'gb'", () => {
    assertRefused(() => parseProxyUsername(`${KEY}-country-uk`), 'bad_params', /country.*'gb'/);
    assertRefused(() => parseProxyUsername(`${KEY}-country-UK`), 'bad_params', /'gb'/);
  });

  test('unassigned, reserved and user-assigned codes are refused', () => {
    for (const code of ['zz', 'xx', 'eu', 'un', 'ez', 'su', 'yu', 'xk', 'ac', 'aa', 'qo']) {
      assertRefused(
        () => parseProxyUsername(`${KEY}-country-${code}`),
        'bad_params',
        new RegExp(`country '${code}'`),
      );
    }
  });

  test('country values that are not two letters are refused', () => {
    for (const value of ['usa', 'u', 'u1', '12', 'u_']) {
      assertRefused(() => parseProxyUsername(`${KEY}-country-${value}`), 'bad_params', /country/);
    }
  });
});

describe('parseProxyUsername: region and city', () => {
  test('region and city are lowercased slugs; underscores stand for spaces', () => {
    assert.deepEqual(parseProxyUsername(`${KEY}-region-New_York-city-NEW_YORK`).targeting, {
      region: 'new_york',
      city: 'new_york',
    });
  });

  test('region and city accept digits and 64 characters', () => {
    const slug = `a1_${'b'.repeat(61)}`;
    assert.equal(slug.length, 64);
    assert.deepEqual(parseProxyUsername(`${KEY}-region-${slug}-city-district9`).targeting, {
      region: slug,
      city: 'district9',
    });
  });

  test('a city without a country is accepted', () => {
    assert.deepEqual(parseProxyUsername(`${KEY}-city-paris`).targeting, { city: 'paris' });
  });

  test('region and city of 65 characters are refused, naming the parameter', () => {
    const slug = 'a'.repeat(65);
    assertRefused(() => parseProxyUsername(`${KEY}-region-${slug}`), 'bad_params', /region/);
    assertRefused(() => parseProxyUsername(`${KEY}-city-${slug}`), 'bad_params', /city/);
  });

  test('region and city with characters outside [a-z0-9_] are refused', () => {
    for (const value of ['new.york', 'new+york', "o'hare", 'san%20jose', 'a/b']) {
      assertRefused(() => parseProxyUsername(`${KEY}-city-${value}`), 'bad_params', /city/);
      assertRefused(() => parseProxyUsername(`${KEY}-region-${value}`), 'bad_params', /region/);
    }
  });

  test('a hyphenated city splits into an unknown parameter and is refused', () => {
    assertRefused(
      () => parseProxyUsername(`${KEY}-city-new-york`),
      'bad_params',
      /unknown parameter 'york'/,
    );
  });
});

describe('parseProxyUsername: asn', () => {
  test('asn is parsed as a number from 1 to 4294967295', () => {
    assert.equal(parseProxyUsername(`${KEY}-asn-1`).targeting.asn, 1);
    assert.equal(parseProxyUsername(`${KEY}-asn-15169`).targeting.asn, 15169);
    assert.equal(parseProxyUsername(`${KEY}-asn-4294967295`).targeting.asn, 4294967295);
  });

  test('asn 0, 4294967296 and longer numbers are refused', () => {
    for (const value of ['0', '4294967296', '9999999999', '12345678901']) {
      assertRefused(() => parseProxyUsername(`${KEY}-asn-${value}`), 'bad_params', /asn/);
    }
  });

  test('asn with leading zeros, a sign, a prefix or a fraction is refused', () => {
    for (const value of ['015169', '00', '+15169', 'as15169', 'AS15169', '1.5', '1e3', '0x10']) {
      assertRefused(() => parseProxyUsername(`${KEY}-asn-${value}`), 'bad_params', /asn/);
    }
  });
});

describe('parseProxyUsername: type', () => {
  test('each exit type is accepted and normalised to lowercase', () => {
    for (const [raw, type] of [
      ['residential', 'residential'],
      ['DataCenter', 'datacenter'],
      ['MOBILE', 'mobile'],
    ] as const) {
      assert.equal(parseProxyUsername(`${KEY}-type-${raw}`).targeting.type, type);
    }
  });

  test('an unknown exit type is refused', () => {
    for (const value of ['isp', 'resi', 'residentials', 'data_center']) {
      assertRefused(() => parseProxyUsername(`${KEY}-type-${value}`), 'bad_params', /type/);
    }
  });
});

describe('parseProxyUsername: session and ttl', () => {
  test('a session without ttl gets the 10 minute default', () => {
    assert.deepEqual(parseProxyUsername(`${KEY}-session-abc`).session, {
      id: 'abc',
      ttlMs: 10 * MINUTE,
    });
  });

  test('session ids keep their case', () => {
    assert.equal(parseProxyUsername(`${KEY}-session-AbC_9`).session?.id, 'AbC_9');
    assert.notEqual(
      parseProxyUsername(`${KEY}-session-Job`).session?.id,
      parseProxyUsername(`${KEY}-session-job`).session?.id,
    );
  });

  test('a session id of 64 characters is accepted and 65 refused', () => {
    const id64 = `${'S'.repeat(63)}_`;
    assert.equal(parseProxyUsername(`${KEY}-session-${id64}`).session?.id, id64);
    assertRefused(
      () => parseProxyUsername(`${KEY}-session-${'s'.repeat(65)}`),
      'bad_params',
      /session/,
    );
  });

  test('a session id with characters outside [A-Za-z0-9_] is refused', () => {
    for (const value of ['a.b', 'a+b', 'a:b', 'a@b']) {
      assertRefused(() => parseProxyUsername(`${KEY}-session-${value}`), 'bad_params', /session/);
    }
  });

  test('ttl accepts s, m and h in either case', () => {
    const cases: [string, number][] = [
      ['1s', 1000],
      ['30s', 30_000],
      ['45S', 45_000],
      ['10m', 10 * MINUTE],
      ['1M', MINUTE],
      ['2h', 2 * HOUR],
      ['3H', 3 * HOUR],
    ];
    for (const [ttl, ms] of cases) {
      assert.equal(parseProxyUsername(`${KEY}-session-s-ttl-${ttl}`).session?.ttlMs, ms, ttl);
    }
  });

  test('ttl of exactly 24h, 1440m and 86400s is accepted', () => {
    for (const ttl of ['24h', '1440m', '86400s']) {
      assert.equal(parseProxyUsername(`${KEY}-session-s-ttl-${ttl}`).session?.ttlMs, 24 * HOUR);
    }
  });

  test('ttl above 24h is refused', () => {
    for (const ttl of ['25h', '1441m', '86401s', '99999999999999999999h', `1${'0'.repeat(400)}s`]) {
      assertRefused(
        () => parseProxyUsername(`${KEY}-session-s-ttl-${ttl}`),
        'bad_params',
        /ttl.*24h/,
      );
    }
  });

  test('ttl of zero is refused', () => {
    for (const ttl of ['0s', '0m', '0h']) {
      assertRefused(() => parseProxyUsername(`${KEY}-session-s-ttl-${ttl}`), 'bad_params', /ttl/);
    }
  });

  test('ttl with leading zeros, a sign, a fraction or a bad unit is refused', () => {
    for (const ttl of ['010m', '+10m', '1.5h', '10', 'm', '10d', '10ms', '1h30m', 'h1']) {
      assertRefused(() => parseProxyUsername(`${KEY}-session-s-ttl-${ttl}`), 'bad_params', /ttl/);
    }
  });

  test('ttl without a session is refused', () => {
    assertRefused(() => parseProxyUsername(`${KEY}-ttl-10m`), 'bad_params', /ttl.*session/);
    assertRefused(
      () => parseProxyUsername(`${KEY}-country-us-ttl-1h`),
      'bad_params',
      /ttl.*session/,
    );
  });
});

describe('parseProxyUsername: malformed structure', () => {
  test('an unknown parameter is refused with its name in the message', () => {
    assertRefused(
      () => parseProxyUsername(`${KEY}-country-us-zone-eu`),
      'bad_params',
      /unknown parameter 'zone'/,
    );
    assertRefused(
      () => parseProxyUsername(`${KEY}-Sticky-yes`),
      'bad_params',
      /unknown parameter 'Sticky'/,
    );
  });

  test('a very long unknown parameter name is clipped in the message', () => {
    const name = 'x'.repeat(400);
    assert.throws(
      () => parseProxyUsername(`${KEY}-${name}-1`),
      (error: unknown) => {
        assert.ok(isIPColaError(error));
        assert.equal(error.code, 'bad_params');
        assert.match(error.message, /unknown parameter 'x+\.\.\.'/);
        assert.ok(error.message.length < 100, error.message);
        return true;
      },
    );
  });

  test('a parameter name without a value is refused', () => {
    assertRefused(
      () => parseProxyUsername(`${KEY}-country`),
      'bad_params',
      /'country' has no value/,
    );
    assertRefused(
      () => parseProxyUsername(`${KEY}-country-us-session`),
      'bad_params',
      /'session' has no value/,
    );
  });

  test('an unknown trailing name is reported as unknown', () => {
    assertRefused(
      () => parseProxyUsername(`${KEY}-country-us-bogus`),
      'bad_params',
      /unknown parameter 'bogus'/,
    );
  });

  test('an empty value is refused', () => {
    assertRefused(() => parseProxyUsername(`${KEY}-country-`), 'bad_params', /'country'.*empty/);
    assertRefused(
      () => parseProxyUsername(`${KEY}-session--country-us`),
      'bad_params',
      /'session'.*empty/,
    );
  });

  test('empty segments are refused', () => {
    for (const username of [`${KEY}--country-us`, `${KEY}-`, `${KEY}-country-us-`, `${KEY}--`]) {
      assertRefused(() => parseProxyUsername(username), 'bad_params', /empty/);
    }
  });

  test('a repeated parameter is refused, whatever the case of its name', () => {
    for (const username of [
      `${KEY}-country-us-country-de`,
      `${KEY}-country-us-country-us`,
      `${KEY}-country-us-COUNTRY-de`,
      `${KEY}-session-a-ttl-1m-session-b`,
    ]) {
      assertRefused(() => parseProxyUsername(username), 'bad_params', /more than once/);
    }
  });
});

describe('parseProxyUsername: hard limits', () => {
  test('a username of 512 characters passes the length limit', () => {
    const username = `${KEY}-city-${'a'.repeat(512 - KEY.length - 6)}`;
    assert.equal(username.length, 512);
    // It fails on the city's own limit, not the username's.
    assertRefused(() => parseProxyUsername(username), 'bad_params', /city/);
  });

  test('a username of 513 characters is refused for its length', () => {
    const username = `${KEY}-city-${'a'.repeat(513 - KEY.length - 6)}`;
    assert.equal(username.length, 513);
    assertRefused(() => parseProxyUsername(username), 'bad_params', /longer than 512/);
  });

  test('a 10 KB username is refused for its length before any parsing', () => {
    const username = `${KEY}-${'city-a-'.repeat(1500)}`.slice(0, 10_240);
    assert.equal(username.length, 10_240);
    assertRefused(() => parseProxyUsername(username), 'bad_params', /longer than 512/);
  });

  test('a 10 KB key id is refused for its length, not as auth_failed', () => {
    assertRefused(() => parseProxyUsername('a'.repeat(10_240)), 'bad_params', /longer than 512/);
  });

  // The regexes are anchored with bounded classes; speed itself is measured in bench/, not here.
  test('near-limit adversarial usernames are refused', () => {
    const inputs = [
      `${KEY}-${'-'.repeat(500)}`,
      `${KEY}-ttl-${'9'.repeat(500)}`,
      `${KEY}-session-${'a'.repeat(490)}!`,
      `${KEY}-region-${'_'.repeat(490)}-`,
    ];
    for (const username of inputs) {
      assertRefused(() => parseProxyUsername(username), 'bad_params');
    }
  });

  test('CR, LF and CRLF inside the username are refused', () => {
    for (const bad of ['\r', '\n', '\r\n']) {
      assertRefused(
        () => parseProxyUsername(`${KEY}-country-us${bad}X-Injected: 1`),
        'bad_params',
        /printable ASCII/,
      );
    }
  });

  test('NUL, space, tab and DEL are refused', () => {
    for (const bad of ['\0', ' ', '\t', '\x7f', '\x1b']) {
      assertRefused(
        () => parseProxyUsername(`${KEY}-session-a${bad}b`),
        'bad_params',
        /printable ASCII/,
      );
    }
  });

  test('non-ASCII characters are refused, even in the key id', () => {
    for (const username of [`${KEY}-city-zürich`, `${KEY}-session-🙂`, 'kéy', `${KEY}\u00a0`]) {
      assertRefused(() => parseProxyUsername(username), 'bad_params', /printable ASCII/);
    }
  });

  test('the refusal names the position of the bad character', () => {
    assertRefused(() => parseProxyUsername('ab\ncd'), 'bad_params', /position 2/);
  });
});

describe('parseBasicProxyAuthorization', () => {
  test('a missing header is auth_required', () => {
    assertRefused(() => parseBasicProxyAuthorization(undefined), 'auth_required');
  });

  test('an empty or blank header is auth_required', () => {
    assertRefused(() => parseBasicProxyAuthorization(''), 'auth_required');
    assertRefused(() => parseBasicProxyAuthorization('   '), 'auth_required');
  });

  test('Basic credentials are decoded into username and password', () => {
    assert.deepEqual(parseBasicProxyAuthorization(basic(`${KEY}-country-us:s3cret`)), {
      username: `${KEY}-country-us`,
      password: 's3cret',
    });
  });

  test('the scheme is case-insensitive and surrounding spaces are tolerated', () => {
    const token = Buffer.from('user:pass').toString('base64');
    for (const header of [`basic ${token}`, `BASIC ${token}`, `bAsIc   ${token}  `]) {
      assert.deepEqual(parseBasicProxyAuthorization(header), {
        username: 'user',
        password: 'pass',
      });
    }
  });

  test('the password may contain colons; only the first colon splits', () => {
    assert.deepEqual(parseBasicProxyAuthorization(basic('user:pa:ss:')), {
      username: 'user',
      password: 'pa:ss:',
    });
  });

  test('an empty password is allowed', () => {
    assert.deepEqual(parseBasicProxyAuthorization(basic(`${KEY}:`)), {
      username: KEY,
      password: '',
    });
  });

  test('a UTF-8 password is decoded', () => {
    assert.equal(parseBasicProxyAuthorization(basic('u:pässwörd')).password, 'pässwörd');
  });

  test('another scheme is auth_failed', () => {
    for (const header of ['Bearer abc.def', 'Digest username="u"', 'BasicdXNlcjpwYXNz']) {
      assertRefused(() => parseBasicProxyAuthorization(header), 'auth_failed', /Basic/);
    }
  });

  test('Basic without credentials is auth_failed', () => {
    assertRefused(() => parseBasicProxyAuthorization('Basic'), 'auth_failed');
    assertRefused(() => parseBasicProxyAuthorization('Basic   '), 'auth_failed');
  });

  test('bad base64 is auth_failed', () => {
    for (const token of ['not base64!', 'dXNlcjpwYXNz=', 'dXNlcjpwYXN', 'dXNl*jpwYXNz', '====']) {
      assertRefused(() => parseBasicProxyAuthorization(`Basic ${token}`), 'auth_failed', /base64/);
    }
  });

  test('base64 with non-zero padding bits is auth_failed', () => {
    // 'dTo=' is 'u:'; 'dTp=' decodes to the same bytes with a stray bit set.
    assert.equal(parseBasicProxyAuthorization('Basic dTo=').username, 'u');
    assertRefused(() => parseBasicProxyAuthorization('Basic dTp='), 'auth_failed', /base64/);
  });

  test('invalid UTF-8 is auth_failed', () => {
    const token = Buffer.from([0x75, 0x3a, 0xff, 0xfe]).toString('base64');
    assertRefused(() => parseBasicProxyAuthorization(`Basic ${token}`), 'auth_failed', /UTF-8/);
  });

  test('credentials without a colon are auth_failed', () => {
    assertRefused(() => parseBasicProxyAuthorization(basic('justauser')), 'auth_failed', /colon/);
  });
});

describe('formatProxyUsername', () => {
  test('a bare key id formats as itself', () => {
    assert.equal(formatProxyUsername(KEY, {}), KEY);
    assert.equal(formatProxyUsername(KEY, {}, null), KEY);
  });

  test('it writes the README example exactly', () => {
    assert.equal(
      formatProxyUsername(KEY, { country: 'us' }, { id: 'job42', ttlMs: 10 * MINUTE }),
      `${KEY}-country-us-session-job42-ttl-10m`,
    );
  });

  test('parameters come out in canonical order and lowercase', () => {
    assert.equal(
      formatProxyUsername(
        KEY,
        { type: 'datacenter', asn: 15169, city: 'San_Jose', region: 'CA', country: 'US' },
        { id: 'Sess_1', ttlMs: 30_000 },
      ),
      `${KEY}-country-us-region-ca-city-san_jose-asn-15169-type-datacenter-session-Sess_1-ttl-30s`,
    );
  });

  test('ttl is written with its largest whole unit', () => {
    const cases: [number, string][] = [
      [1000, '1s'],
      [90_000, '90s'],
      [MINUTE, '1m'],
      [90 * MINUTE, '90m'],
      [HOUR, '1h'],
      [24 * HOUR, '24h'],
    ];
    for (const [ttlMs, ttl] of cases) {
      assert.equal(formatProxyUsername(KEY, {}, { id: 's', ttlMs }), `${KEY}-session-s-ttl-${ttl}`);
    }
  });

  test('round-trips: parsing a formatted username gives the input back', () => {
    const cases: [Targeting, ProxyCredentials['session']][] = [
      [{}, null],
      [{ country: 'gb' }, null],
      [
        { region: 'new_york', city: 'new_york' },
        { id: 'x', ttlMs: 10 * MINUTE },
      ],
      [
        { asn: 4294967295, type: 'mobile' },
        { id: 'A_b_C', ttlMs: 86_399_000 },
      ],
      [
        { country: 'jp', region: 'tokyo', city: 'shibuya', asn: 2516, type: 'residential' },
        { id: 'z'.repeat(64), ttlMs: 24 * HOUR },
      ],
    ];
    for (const [targeting, session] of cases) {
      const username = formatProxyUsername(KEY, targeting, session);
      assert.deepEqual(parseProxyUsername(username), { keyId: KEY, targeting, session }, username);
    }
  });

  test('round-trips: formatting a parsed username gives its canonical form', () => {
    const cases: [string, string][] = [
      [`${KEY}-TTL-1440M-Session-S-COUNTRY-De`, `${KEY}-country-de-session-S-ttl-24h`],
      [`${KEY}-type-MOBILE-asn-7-city-X`, `${KEY}-city-x-asn-7-type-mobile`],
      [`${KEY}-session-s`, `${KEY}-session-s-ttl-10m`],
      [`${KEY}-session-s-ttl-120s`, `${KEY}-session-s-ttl-2m`],
    ];
    for (const [input, canonical] of cases) {
      const parsed = parseProxyUsername(input);
      const formatted = formatProxyUsername(parsed.keyId, parsed.targeting, parsed.session);
      assert.equal(formatted, canonical);
      assert.deepEqual(parseProxyUsername(formatted), parsed);
    }
  });

  test('it refuses values the parser would refuse', () => {
    assertRefused(() => formatProxyUsername('Bad.Key', {}), 'auth_failed', /key id/);
    assertRefused(() => formatProxyUsername(KEY, { country: 'uk' }), 'bad_params', /'gb'/);
    assertRefused(() => formatProxyUsername(KEY, { country: 'zz' }), 'bad_params', /country/);
    assertRefused(() => formatProxyUsername(KEY, { city: 'new-york' }), 'bad_params', /city/);
    assertRefused(() => formatProxyUsername(KEY, { region: '' }), 'bad_params', /region/);
    assertRefused(() => formatProxyUsername(KEY, { asn: 0 }), 'bad_params', /asn/);
    assertRefused(() => formatProxyUsername(KEY, { asn: 1.5 }), 'bad_params', /asn/);
    assertRefused(() => formatProxyUsername(KEY, { asn: 2 ** 32 }), 'bad_params', /asn/);
    const badType = { type: 'isp' } as unknown as Targeting;
    assertRefused(() => formatProxyUsername(KEY, badType), 'bad_params', /type/);
    assertRefused(
      () => formatProxyUsername(KEY, {}, { id: 'a-b', ttlMs: MINUTE }),
      'bad_params',
      /session/,
    );
  });

  test('it refuses a ttl that is not whole seconds from 1s to 24h', () => {
    for (const ttlMs of [0, 999, 1500, 24 * HOUR + 1000, -MINUTE, Number.NaN]) {
      assertRefused(() => formatProxyUsername(KEY, {}, { id: 's', ttlMs }), 'bad_params', /ttl/);
    }
  });
});
