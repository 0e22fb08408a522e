import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig, redactUrl } from '../../src/config/index.ts';

const load = (env: Record<string, string>) => loadConfig(env, '/srv/ipcola');

function refusal(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(env)} to be refused`);
}

describe('configuration', () => {
  test('an empty environment gives the documented embedded defaults', () => {
    const config = load({});
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.apiPort, 8080);
    assert.equal(config.proxyPort, 8000);
    assert.equal(config.socksPort, 1080);
    assert.equal(config.hubPort, 7000);
    assert.equal(config.dataDir, '/srv/ipcola/data');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.stripeSecretKey, undefined);
    assert.equal(config.stripeApiUrl, 'https://api.stripe.com');
    assert.equal(config.portalUrl, undefined, 'Checkout returns to the API itself');
    assert.equal(config.geoIpDb, undefined, 'the packaged city database');
    assert.equal(config.asnDb, undefined, 'the packaged ASN database');
    assert.equal(config.trustDeclaredLocation, true);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.publicHost, '127.0.0.1');
    assert.equal(config.billingCurrency, 'usd');
    assert.equal(config.trialCreditMicro, 2_000_000, 'a trial of 2.00');
    assert.equal(config.payoutHoldDays, 14, 'earnings are held back two weeks');
    assert.equal(config.payoutMinimumMicro, 20_000_000, 'payouts of at least 20.00');
    assert.deepEqual(config.upstreamAllowTargets, [], 'no policy exceptions for upstream exits');
    assert.deepEqual(config.upstreamAllowProxies, []);
    assert.equal(config.upstreamProbeIntervalMs, 10_000);
    assert.equal(config.usageFlushIntervalMs, 5_000);
    assert.equal(config.allowanceChunkBytes, 1_048_576);
    assert.equal(config.authFailureLimit, 30);
    assert.deepEqual(config.gatewayTimeouts, { handshakeMs: 10_000, outageGraceMs: 300_000 });
    assert.equal(config.metricsToken, undefined);
    assert.equal(config.strictApiAnswers, false);
    assert.equal(config.signupLimitPerHour, 5);
    assert.deepEqual(config.trustProxy, [], 'no proxy is believed');
    assert.equal(config.webhookRetryBaseMs, 30_000);
    assert.deepEqual(config.webhookAllowTargets, [], 'webhooks go to public https URLs only');
    assert.equal(config.tls, undefined, 'the hub and the API in plain text');
  });

  test('TLS_CERT_FILE and TLS_KEY_FILE come together, relative to the working directory', () => {
    const here = import.meta.dirname;
    const config = loadConfig(
      { TLS_CERT_FILE: '../../package.json', TLS_KEY_FILE: 'x/../../../tsconfig.json' },
      here,
    );
    assert.deepEqual(config.tls, {
      certFile: path.resolve(here, '../../package.json'),
      keyFile: path.resolve(here, '../../tsconfig.json'),
    });
  });

  test('WEBHOOK_RETRY_BASE_MS is a whole number of milliseconds; WEBHOOK_ALLOW_TARGETS lists CIDRs', () => {
    const config = load({
      WEBHOOK_RETRY_BASE_MS: '5',
      WEBHOOK_ALLOW_TARGETS: '127.0.0.1/32, ::1/128',
    });
    assert.equal(config.webhookRetryBaseMs, 5);
    assert.deepEqual(config.webhookAllowTargets, ['127.0.0.1/32', '::1/128']);
    for (const bad of ['0', '3600001', '1.5', 'soon']) {
      assert.equal(refusal({ WEBHOOK_RETRY_BASE_MS: bad }).variable, 'WEBHOOK_RETRY_BASE_MS', bad);
    }
    assert.equal(refusal({ WEBHOOK_ALLOW_TARGETS: '127.0.0.1' }).variable, 'WEBHOOK_ALLOW_TARGETS');
  });

  test('TRUST_PROXY lists the CIDRs of the proxies in front; SIGNUP_LIMIT_PER_HOUR is a count', () => {
    const config = load({ TRUST_PROXY: '10.0.0.0/8, fd00::/8', SIGNUP_LIMIT_PER_HOUR: '20' });
    assert.deepEqual(config.trustProxy, ['10.0.0.0/8', 'fd00::/8']);
    assert.equal(config.signupLimitPerHour, 20);
  });

  test('the trial credit is an amount of the billing currency, given in either case', () => {
    const config = load({ TRIAL_CREDIT: '0.000001', BILLING_CURRENCY: 'EUR' });
    assert.equal(config.trialCreditMicro, 1);
    assert.equal(config.billingCurrency, 'eur');
    assert.equal(load({ TRIAL_CREDIT: '0' }).trialCreditMicro, 0);
    assert.equal(load({ TRIAL_CREDIT: '12.5' }).trialCreditMicro, 12_500_000);
  });

  test('PAYOUT_HOLD_DAYS is whole days up to a year; PAYOUT_MINIMUM an amount', () => {
    const config = load({ PAYOUT_HOLD_DAYS: '0', PAYOUT_MINIMUM: '0.50' });
    assert.equal(config.payoutHoldDays, 0);
    assert.equal(config.payoutMinimumMicro, 500_000);
    assert.equal(load({ PAYOUT_HOLD_DAYS: '365' }).payoutHoldDays, 365);
  });

  test('upstream-exit policy exceptions are lists of CIDRs', () => {
    const config = load({
      UPSTREAM_ALLOW_TARGETS: '127.0.0.1/32, fd00::/8',
      UPSTREAM_ALLOW_PROXIES: '10.0.0.0/8',
      UPSTREAM_PROBE_INTERVAL_MS: '250',
    });
    assert.deepEqual(config.upstreamAllowTargets, ['127.0.0.1/32', 'fd00::/8']);
    assert.deepEqual(config.upstreamAllowProxies, ['10.0.0.0/8']);
    assert.equal(config.upstreamProbeIntervalMs, 250);
    assert.ok(Object.isFrozen(config.upstreamAllowTargets));
  });

  test('PUBLIC_HOST defaults to a dialable address when listening on every interface', () => {
    assert.equal(load({ HOST: '0.0.0.0' }).publicHost, '127.0.0.1');
    assert.equal(
      load({ HOST: '0.0.0.0', PUBLIC_HOST: 'proxy.example.com' }).publicHost,
      'proxy.example.com',
    );
    assert.equal(load({ HOST: '10.1.2.3' }).publicHost, '10.1.2.3');
  });

  test('the config object is frozen', () => {
    const config = load({});
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as { apiPort: number }).apiPort = 1;
    }, TypeError);
  });

  test('values are read and typed', () => {
    const config = load({
      HOST: '0.0.0.0',
      API_PORT: '9080',
      PROXY_PORT: ' 9000 ',
      SOCKS_PORT: '9001',
      HUB_PORT: '9002',
      DATA_DIR: 'var/ipcola',
      DATABASE_URL: 'postgres://u:p@db:5432/ipcola',
      REDIS_URL: 'redis://cache:6379/2',
      STRIPE_SECRET_KEY: 'sk_test_123',
      STRIPE_WEBHOOK_SECRET: 'whsec_abc',
      LOG_LEVEL: 'DEBUG',
    });
    assert.equal(config.host, '0.0.0.0');
    assert.deepEqual(
      [config.apiPort, config.proxyPort, config.socksPort, config.hubPort],
      [9080, 9000, 9001, 9002],
    );
    assert.equal(config.dataDir, '/srv/ipcola/var/ipcola');
    assert.equal(config.databaseUrl, 'postgres://u:p@db:5432/ipcola');
    assert.equal(config.redisUrl, 'redis://cache:6379/2');
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.trustDeclaredLocation, false, 'off by default with PostgreSQL');
  });

  test('GEOIP_DB and ASN_DB take comma-separated files, relative to the working directory', () => {
    const here = import.meta.dirname;
    const config = loadConfig(
      {
        GEOIP_DB: 'config-reads-and-validates-environment.test.ts, ../../package.json',
        ASN_DB: '../../package.json',
      },
      here,
    );
    assert.deepEqual(config.geoIpDb, [
      `${here}/config-reads-and-validates-environment.test.ts`,
      path.resolve(here, '../../package.json'),
    ]);
    assert.deepEqual(config.asnDb, [path.resolve(here, '../../package.json')]);
  });

  test('TRUST_DECLARED_LOCATION overrides the mode default both ways', () => {
    assert.equal(load({ TRUST_DECLARED_LOCATION: 'off' }).trustDeclaredLocation, false);
    assert.equal(
      load({ TRUST_DECLARED_LOCATION: 'true', DATABASE_URL: 'postgresql://db/x' })
        .trustDeclaredLocation,
      true,
    );
  });

  test('STRIPE_API_URL is an http(s) origin; PORTAL_URL any http(s) URL', () => {
    const config = load({
      STRIPE_SECRET_KEY: 'sk_test_1',
      STRIPE_WEBHOOK_SECRET: 'whsec_1',
      STRIPE_API_URL: 'http://127.0.0.1:12111/',
      PORTAL_URL: 'https://ipcola.example/account?tab=billing',
    });
    assert.equal(config.stripeApiUrl, 'http://127.0.0.1:12111');
    assert.equal(config.portalUrl, 'https://ipcola.example/account?tab=billing');
    for (const bad of ['ftp://stripe', 'https://api.stripe.com/v1', 'api.stripe.com']) {
      assert.equal(refusal({ STRIPE_API_URL: bad }).variable, 'STRIPE_API_URL', bad);
    }
    assert.equal(refusal({ PORTAL_URL: 'javascript:alert(1)' }).variable, 'PORTAL_URL');
  });

  test('port 0 may repeat: each listener asks the OS for its own free port', () => {
    const config = load({ API_PORT: '0', PROXY_PORT: '0', SOCKS_PORT: '0', HUB_PORT: '0' });
    assert.equal(config.apiPort, 0);
    assert.equal(config.hubPort, 0);
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['API_PORT', { API_PORT: 'abc' }, /not a port/],
    ['API_PORT', { API_PORT: '80.5' }, /not a port/],
    ['PROXY_PORT', { PROXY_PORT: '65536' }, /out of range/],
    ['SOCKS_PORT', { SOCKS_PORT: '-1' }, /not a port/],
    ['HUB_PORT', { HUB_PORT: '1e3' }, /not a port/],
    ['HUB_PORT', { HUB_PORT: '8080' }, /already taken by API_PORT/],
    ['HOST', { HOST: 'not a host' }, /not an IP address or host name/],
    ['HOST', { HOST: '-bad.example' }, /not an IP address or host name/],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://db/x' }, /scheme "mysql:" is not supported/],
    ['DATABASE_URL', { DATABASE_URL: 'not a url' }, /not a valid URL/],
    ['REDIS_URL', { REDIS_URL: 'http://cache' }, /not supported/],
    ['STRIPE_SECRET_KEY', { STRIPE_SECRET_KEY: 'pk_live_123' }, /Stripe/],
    [
      'STRIPE_WEBHOOK_SECRET',
      { STRIPE_SECRET_KEY: 'sk_test_1', STRIPE_WEBHOOK_SECRET: 'abc' },
      /Stripe/,
    ],
    ['STRIPE_WEBHOOK_SECRET', { STRIPE_WEBHOOK_SECRET: 'whsec_1' }, /STRIPE_SECRET_KEY is not/],
    ['STRIPE_WEBHOOK_SECRET', { STRIPE_SECRET_KEY: 'sk_test_1' }, /credited by the webhook/],
    ['STRIPE_API_URL', { STRIPE_API_URL: 'https://api.stripe.com/v1' }, /origin only/],
    ['PORTAL_URL', { PORTAL_URL: 'ftp://portal' }, /not supported/],
    ['TRUST_DECLARED_LOCATION', { TRUST_DECLARED_LOCATION: 'maybe' }, /not a boolean/],
    [
      'GEOIP_DB',
      { GEOIP_DB: '/nonexistent/city.mmdb' },
      /"\/nonexistent\/city.mmdb" cannot be read \(ENOENT\)/,
    ],
    ['ASN_DB', { ASN_DB: '/' }, /"\/" is not a file/],
    ['TLS_KEY_FILE', { TLS_CERT_FILE: '/etc/hostname' }, /is required with TLS_CERT_FILE/],
    ['TLS_CERT_FILE', { TLS_KEY_FILE: '/etc/hostname' }, /is required with TLS_KEY_FILE/],
    ['TLS_CERT_FILE', { TLS_CERT_FILE: '/nonexistent.pem' }, /cannot be read \(ENOENT\)/],
    ['TLS_KEY_FILE', { TLS_CERT_FILE: '/etc/hostname', TLS_KEY_FILE: '/' }, /is not a file/],
    ['TLS_CERT_FILE', { TLS_CERT_FILE: 'a.pem,b.pem' }, /takes one file/],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, /not one of/],
    ['PUBLIC_HOST', { PUBLIC_HOST: 'http://x' }, /not an IP address or host name/],
    ['TRIAL_CREDIT', { TRIAL_CREDIT: 'lots' }, /not an amount/],
    ['TRIAL_CREDIT', { TRIAL_CREDIT: '-1' }, /not an amount/],
    ['TRIAL_CREDIT', { TRIAL_CREDIT: '1.0000001' }, /at most six decimals/],
    ['TRIAL_CREDIT', { TRIAL_CREDIT: '1e3' }, /not an amount/],
    ['TRIAL_CREDIT_BYTES', { TRIAL_CREDIT_BYTES: '1073741824' }, /no longer read.*TRIAL_CREDIT/],
    ['SHUTDOWN_GRACE_MS', { SHUTDOWN_GRACE_MS: '999999' }, /out of range/],
    ['PAYOUT_HOLD_DAYS', { PAYOUT_HOLD_DAYS: '366' }, /out of range/],
    ['PAYOUT_HOLD_DAYS', { PAYOUT_HOLD_DAYS: '1.5' }, /not a whole number/],
    ['PAYOUT_MINIMUM', { PAYOUT_MINIMUM: '-5' }, /not an amount/],
    ['PAYOUT_MINIMUM', { PAYOUT_MINIMUM: 'twenty' }, /not an amount/],
    ['UPSTREAM_ALLOW_TARGETS', { UPSTREAM_ALLOW_TARGETS: '127.0.0.1' }, /not a CIDR/],
    ['UPSTREAM_ALLOW_TARGETS', { UPSTREAM_ALLOW_TARGETS: '10.0.0.0/33' }, /not a CIDR/],
    ['UPSTREAM_ALLOW_TARGETS', { UPSTREAM_ALLOW_TARGETS: '127.1/32' }, /not a CIDR/],
    ['UPSTREAM_ALLOW_TARGETS', { UPSTREAM_ALLOW_TARGETS: '10.0.0.0/8,,' }, /not a CIDR/],
    ['UPSTREAM_ALLOW_PROXIES', { UPSTREAM_ALLOW_PROXIES: 'fe80::1%eth0/128' }, /not a CIDR/],
    ['UPSTREAM_PROBE_INTERVAL_MS', { UPSTREAM_PROBE_INTERVAL_MS: '10' }, /out of range/],
    ['UPSTREAM_PROBE_INTERVAL_MS', { UPSTREAM_PROBE_INTERVAL_MS: 'often' }, /not a whole number/],
    ['USAGE_FLUSH_INTERVAL_MS', { USAGE_FLUSH_INTERVAL_MS: '99' }, /out of range/],
    ['USAGE_FLUSH_INTERVAL_MS', { USAGE_FLUSH_INTERVAL_MS: '1e3' }, /not a whole number/],
    ['AUTH_FAILURE_LIMIT', { AUTH_FAILURE_LIMIT: '0' }, /out of range/],
    ['PROXY_HANDSHAKE_TIMEOUT_MS', { PROXY_HANDSHAKE_TIMEOUT_MS: '99' }, /out of range/],
    ['OUTAGE_GRACE_MS', { OUTAGE_GRACE_MS: '3600001' }, /out of range/],
    ['ALLOWANCE_CHUNK_BYTES', { ALLOWANCE_CHUNK_BYTES: '1024' }, /out of range/],
    ['ALLOWANCE_CHUNK_BYTES', { ALLOWANCE_CHUNK_BYTES: '1e6' }, /not a whole number/],
    ['ALLOWANCE_CHUNK_BYTES', { ALLOWANCE_CHUNK_BYTES: '999999999999' }, /out of range/],
    ['TRUST_PROXY', { TRUST_PROXY: 'loopback' }, /not a CIDR/],
    ['TRUST_PROXY', { TRUST_PROXY: '10.0.0.0/8,300.1.1.1/32' }, /not a CIDR/],
    ['SIGNUP_LIMIT_PER_HOUR', { SIGNUP_LIMIT_PER_HOUR: 'many' }, /not a whole number/],
    ['METRICS_TOKEN', { METRICS_TOKEN: 'short' }, /24-256 visible ASCII/],
    ['NODE_EARNINGS_MINOR_PER_GB', { NODE_EARNINGS_MINOR_PER_GB: '10' }, /npm run admin -- prices/],
    ['NODE_EARNINGS_CURRENCY', { NODE_EARNINGS_CURRENCY: 'usd' }, /BILLING_CURRENCY/],
    ['BILLING_CURRENCY', { BILLING_CURRENCY: 'dollars' }, /ISO 4217/],
  ];
  for (const [variable, env, reason] of bad) {
    test(`${variable}=${Object.values(env).at(-1)} is refused naming ${variable}`, () => {
      const error = refusal(env);
      assert.equal(error.variable, variable);
      assert.match(error.message, new RegExp(`^${variable}: `));
      assert.match(error.reason, reason);
      assert.doesNotMatch(error.message, /\n/, 'one line');
    });
  }

  test("exit nodes' health: PING deadline and failed-open ejection, defaults and limits", () => {
    assert.deepEqual(load({}).nodeHealth, {
      pingIntervalMs: 2_000,
      pingTimeoutMs: 4_000,
      streamFailureLimit: 3,
      probeBackoffMs: 5_000,
      probeBackoffMaxMs: 300_000,
    });
    const set = load({
      HUB_PING_INTERVAL_MS: '500',
      HUB_PING_TIMEOUT_MS: '1500',
      HUB_STREAM_FAILURE_LIMIT: '5',
      HUB_PROBE_BACKOFF_MS: '1000',
      HUB_PROBE_BACKOFF_MAX_MS: '1000',
    }).nodeHealth;
    assert.deepEqual(Object.values(set), [500, 1_500, 5, 1_000, 1_000]);
    for (const [variable, env, reason] of [
      ['HUB_PING_INTERVAL_MS', { HUB_PING_INTERVAL_MS: '50' }, /out of range/],
      ['HUB_PING_TIMEOUT_MS', { HUB_PING_TIMEOUT_MS: '4s' }, /not a whole number/],
      ['HUB_STREAM_FAILURE_LIMIT', { HUB_STREAM_FAILURE_LIMIT: '0' }, /out of range/],
      [
        'HUB_PROBE_BACKOFF_MAX_MS',
        { HUB_PROBE_BACKOFF_MS: '2000', HUB_PROBE_BACKOFF_MAX_MS: '1000' },
        /below HUB_PROBE_BACKOFF_MS/,
      ],
    ] as const) {
      const error = refusal(env);
      assert.equal(error.variable, variable);
      assert.match(error.reason, reason);
    }
  });

  test('a refused DATABASE_URL never echoes its password', () => {
    const error = refusal({ DATABASE_URL: 'mysql://user:hunter2@db/x' });
    assert.doesNotMatch(error.message, /hunter2/);
    assert.equal(redactUrl('postgres://user:hunter2@db/x'), 'postgres://user:***@db/x');
  });
});
