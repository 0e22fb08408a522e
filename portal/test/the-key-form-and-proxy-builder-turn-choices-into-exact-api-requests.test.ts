/**
 * The logic under the key form, the proxy builder, the usage chart and the log-in page:
 * what each choice sends to the API and how the answers are shown.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errorFor } from '@ipcola/sdk/api';
import { authErrorMessage } from '../src/components/auth-errors.ts';
import {
  connectionSnippets,
  keyRequest,
  keySettingsProblems,
  NEW_KEY,
  settingsOf,
} from '../src/components/key-settings.ts';
import {
  onlineExits,
  type ProxyChoice,
  proxyListRequest,
  proxyUsername,
} from '../src/components/proxy-choice.ts';
import { periods, seriesByCountry, seriesByKey } from '../src/components/usage-series.ts';

describe('the key form', () => {
  test('an untouched form makes a proxy-only key with every limit removed', () => {
    assert.deepEqual(keyRequest(NEW_KEY), {
      name: '',
      scopes: ['proxy'],
      monthly_byte_cap: null,
      max_concurrency: null,
      allowed_countries: null,
      client_allowlist: null,
      passwordless_cidrs: [],
      default_targeting: '',
    });
  });

  test('caps in GB become bytes, countries lowercase, the api scope is added when asked', () => {
    const request = keyRequest({
      ...NEW_KEY,
      name: '  scraper ',
      api: true,
      monthlyGb: 2.5,
      maxConcurrency: 20,
      countries: ['US', 'de'],
      allowlist: [' 203.0.113.0/24 '],
    });
    assert.equal(request.name, 'scraper');
    assert.deepEqual(request.scopes, ['proxy', 'api']);
    assert.equal(request.monthly_byte_cap, 2_500_000_000);
    assert.equal(request.max_concurrency, 20);
    assert.deepEqual(request.allowed_countries, ['us', 'de']);
    assert.deepEqual(request.client_allowlist, ['203.0.113.0/24']);
  });

  test("a key's settings come back into the form as they were sent", () => {
    const settings = {
      ...NEW_KEY,
      name: 'k',
      api: true,
      monthlyGb: 5,
      maxConcurrency: 3,
      countries: ['fr'],
    };
    const request = keyRequest(settings);
    const key = {
      id: 'abc',
      name: request.name ?? '',
      scopes: request.scopes ?? ['proxy'],
      disabled: false,
      monthly_byte_cap: request.monthly_byte_cap ?? null,
      max_concurrency: request.max_concurrency ?? null,
      allowed_countries: request.allowed_countries ?? null,
      client_allowlist: request.client_allowlist ?? null,
      passwordless_cidrs: request.passwordless_cidrs ?? [],
      default_targeting: request.default_targeting ?? '',
      created_at: '2026-12-01T00:00:00Z',
      updated_at: '2026-12-01T00:00:00Z',
    } as const;
    assert.deepEqual(settingsOf({ ...key, scopes: [...key.scopes] }), settings);
  });

  test('bad countries and limits are named beside their fields before anything is sent', () => {
    assert.deepEqual(keySettingsProblems(NEW_KEY), {});
    const problems = keySettingsProblems({
      ...NEW_KEY,
      countries: ['us', 'usa'],
      maxConcurrency: 0,
      monthlyGb: -1,
    });
    assert.match(problems.countries ?? '', /usa is not a two-letter country code/);
    assert.equal(problems.maxConcurrency, 'At least 1');
    assert.equal(problems.monthlyGb, 'Zero or more');
  });

  test('the snippets beside a new secret use its proxy URL', () => {
    const snippets = connectionSnippets(
      {
        id: 'abc',
        name: '',
        scopes: ['proxy'],
        created_at: '2026-12-01T00:00:00Z',
        secret: 'S3CRET',
        proxy_username: 'abc',
        proxy_password: 'S3CRET',
        http_proxy_url: 'http://abc:S3CRET@127.0.0.1:8000',
        socks_proxy_url: 'socks5h://abc:S3CRET@127.0.0.1:1080',
        curl_example: '',
      },
      'http://127.0.0.1:9/',
      'https://portal.example',
    );
    assert.equal(snippets.curl, 'curl -x http://abc:S3CRET@127.0.0.1:8000 http://127.0.0.1:9/');
    assert.match(snippets.node, /new ProxyAgent\('http:\/\/abc:S3CRET@127\.0\.0\.1:8000'\)/);
    assert.match(snippets.python, /proxies=\{'http': proxy, 'https': proxy\}/);
    assert.match(snippets.sdk, /apiKey: 'abc\.S3CRET'/);
    assert.match(snippets.sdk, /apiUrl: 'https:\/\/portal\.example'/);
    assert.match(snippets.sdk, /proxyUrl: 'http:\/\/127\.0\.0\.1:8000'/);
  });
});

describe('the proxy builder', () => {
  const choice: ProxyChoice = {
    keyId: 'abc',
    country: 'us',
    city: 'new_york',
    type: 'residential',
    sticky: true,
    ttlSeconds: 3600,
    format: 'url',
    count: 5,
  };

  test('the username carries the targeting in the gateway grammar', () => {
    assert.equal(
      proxyUsername(choice, 'job1'),
      'abc-country-us-city-new_york-type-residential-session-job1-ttl-1h',
    );
    assert.equal(
      proxyUsername({ ...choice, ttlSeconds: 600 }, 'a'),
      'abc-country-us-city-new_york-type-residential-session-a-ttl-10m',
    );
    assert.equal(
      proxyUsername({ ...choice, country: '', city: '', type: '', sticky: false }),
      'abc',
    );
  });

  test('the proxy-list request names only what was chosen', () => {
    assert.deepEqual(proxyListRequest(choice, ''), {
      key_id: 'abc',
      count: 5,
      sticky: true,
      format: 'url',
      country: 'us',
      city: 'new_york',
      type: 'residential',
      ttl_seconds: 3600,
    });
    assert.deepEqual(
      proxyListRequest({ ...choice, country: '', city: '', type: '', sticky: false }, 'S'),
      { key_id: 'abc', count: 5, sticky: false, format: 'url', secret: 'S' },
    );
  });

  test('online exits are summed over the regions matching the choice', () => {
    const regions = [
      {
        country: 'us',
        city: 'new_york',
        type: 'residential',
        exits: 3,
        healthy: 3,
        asns: [] as never[],
      },
      { country: 'us', city: null, type: 'datacenter', exits: 2, healthy: 2, asns: [] as never[] },
      {
        country: 'de',
        city: 'berlin',
        type: 'residential',
        exits: 4,
        healthy: 4,
        asns: [] as never[],
      },
    ] as const;
    const all = regions.map((region) => ({ ...region }));
    assert.equal(onlineExits(all, choice), 3);
    assert.equal(onlineExits(all, { ...choice, city: '', type: '' }), 5);
    assert.equal(onlineExits(all, { ...choice, country: '', city: '', type: '' }), 9);
    assert.equal(onlineExits(all, { ...choice, country: 'fr', city: '' }), 0);
  });
});

describe('the usage chart', () => {
  const rows = [
    {
      period_start: '2026-12-01T10:00:00Z',
      key_id: 'a',
      key_name: 'alpha',
      bytes_up: 10,
      bytes_down: 90,
      requests: 1,
    },
    {
      period_start: '2026-12-01T12:00:00Z',
      key_id: 'a',
      key_name: 'alpha',
      bytes_up: 5,
      bytes_down: 5,
      requests: 1,
    },
    {
      period_start: '2026-12-01T12:00:00Z',
      key_id: 'b',
      key_name: '',
      bytes_up: 1,
      bytes_down: 1,
      requests: 1,
    },
  ];

  test('every period of the range is on the axis, quiet ones at zero', () => {
    const times = periods('2026-12-01T10:30:00Z', '2026-12-01T13:00:00Z', 'hour');
    assert.deepEqual(
      times.map((time) => new Date(time * 1000).toISOString()),
      ['2026-12-01T10:00:00.000Z', '2026-12-01T11:00:00.000Z', '2026-12-01T12:00:00.000Z'],
    );
    const chart = seriesByKey(rows, times);
    assert.deepEqual(chart.series, [
      { label: 'alpha', values: [100, 0, 10] },
      { label: 'b', values: [0, 0, 2] },
    ]);
  });

  test('by country, each country is one series and silent countries are left out', () => {
    const times = periods('2026-12-01T10:00:00Z', '2026-12-01T13:00:00Z', 'hour');
    const chart = seriesByCountry(
      [
        { country: 'us', rows },
        { country: 'de', rows: [] },
      ],
      times,
    );
    assert.deepEqual(chart.series, [{ label: 'US', values: [100, 0, 12] }]);
  });
});

describe('the log-in page', () => {
  test('each refusal reads as what to do next', () => {
    assert.equal(
      authErrorMessage(errorFor('unauthorized', 'x', { status: 401 }), 'login'),
      'Wrong email or password.',
    );
    assert.match(
      authErrorMessage(errorFor('email_taken', 'x', { status: 409 }), 'signup'),
      /already exists\. Log in instead/,
    );
    assert.match(
      authErrorMessage(errorFor('rate_limited', 'x', { status: 429, retryAfter: 240 }), 'login'),
      /Try again in 240 seconds/,
    );
    assert.match(
      authErrorMessage(errorFor('invalid_request', 'x', { status: 400 }), 'signup'),
      /at least 10 characters/,
    );
  });
});
