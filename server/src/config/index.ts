import { accessSync, constants, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { MICRO_PER_UNIT, parseMoney } from '../billing/index.ts';

/** The whole runtime configuration, read once at start-up and frozen. */
export interface Config {
  readonly host: string;
  /** The address customers and exit nodes dial, for the URLs and commands the API prints. */
  readonly publicHost: string;
  readonly apiPort: number;
  readonly proxyPort: number;
  readonly socksPort: number;
  readonly hubPort: number;
  /** Where other instances open streams through this one's nodes (0: any free port). */
  readonly peerPort: number;
  /** The address other instances reach this one at; unset, the listen host (or host name). */
  readonly peerHost: string | undefined;
  /** Processes sharing the listening ports (each one an instance of the cluster). */
  readonly workers: number;
  readonly dataDir: string;
  /** Unset: embedded PGlite under dataDir. */
  readonly databaseUrl: string | undefined;
  /** Unset: in-process hot state. */
  readonly redisUrl: string | undefined;
  /**
   * The certificate (leaf first, then its chain) and key the hub and the API serve TLS with
   * (TLS_CERT_FILE, TLS_KEY_FILE, PEM); unset: both listen in plain text. The proxy ports
   * stay plain either way.
   */
  readonly tls: TlsFiles | undefined;
  readonly stripeSecretKey: string | undefined;
  readonly stripeWebhookSecret: string | undefined;
  /** Where the Stripe client sends its requests: Stripe's API, or a stand-in in tests. */
  readonly stripeApiUrl: string;
  /**
   * The page Stripe Checkout sends a customer back to; unset, the API's own public address
   * (`http://PUBLIC_HOST:API_PORT/`, known once the API listens).
   */
  readonly portalUrl: string | undefined;
  readonly trustDeclaredLocation: boolean;
  /** IP-geolocation MMDB files (GEOIP_DB); unset: the packaged DB-IP City Lite. */
  readonly geoIpDb: readonly string[] | undefined;
  /** ASN files, MMDB or ip-location-db CSV (ASN_DB); unset: the packaged ASN list. */
  readonly asnDb: readonly string[] | undefined;
  readonly logLevel: LogLevel;
  /** The currency balances, prices and the journal are kept in (ISO 4217, lower case). */
  readonly billingCurrency: string;
  /** Credit a new account starts with, in micro-units of the currency. */
  readonly trialCreditMicro: number;
  /**
   * Days an operator's earnings are held back before they may be paid out: the traffic
   * behind them may still be refunded or disputed.
   */
  readonly payoutHoldDays: number;
  /** The least one payout may be, in micro-units of the currency. */
  readonly payoutMinimumMicro: number;
  /** How long shutdown waits for open connections before cutting them. */
  readonly shutdownGraceMs: number;
  /** How long, once told to stop, the instance answers /readyz 503 and still serves. */
  readonly shutdownDelayMs: number;
  /** CIDRs that upstream-proxy exits may reach although the exit policy refuses their range. */
  readonly upstreamAllowTargets: readonly string[];
  /** CIDRs where upstream proxies may be although the exit policy refuses their range. */
  readonly upstreamAllowProxies: readonly string[];
  /** How often each upstream proxy is probed (and the list of upstream nodes reloaded). */
  readonly upstreamProbeIntervalMs: number;
  /** How exit nodes' health is judged: PING deadline, and failed stream opens. */
  readonly nodeHealth: {
    /** How often the hub PINGs each node. */
    readonly pingIntervalMs: number;
    /** A node whose PING answer takes longer leaves the pool and is disconnected. */
    readonly pingTimeoutMs: number;
    /** Failed stream opens in a row that take a node out of the pool until a probe answers. */
    readonly streamFailureLimit: number;
    /** First wait before probing a node taken out; doubles per failed probe. */
    readonly probeBackoffMs: number;
    readonly probeBackoffMaxMs: number;
  };
  /** How often metered usage is written from hot state to the database (and debited). */
  readonly usageFlushIntervalMs: number;
  /** Bytes a connection is granted at a time from what its key and account may spend. */
  readonly allowanceChunkBytes: number;
  /** Failed sign-ins (proxy or log-in) per client address and minute before it is refused. */
  readonly authFailureLimit: number;
  /** The gateway's settings of time. */
  readonly gatewayTimeouts: {
    /** From accept until a proxy request's headers (or the SOCKS5 handshake) are complete. */
    readonly handshakeMs: number;
    /** How long the gateway runs on what PostgreSQL last said of a key while it is down. */
    readonly outageGraceMs: number;
  };
  /** Bearer token for GET /metrics; unset, only loopback clients may read it. */
  readonly metricsToken: string | undefined;
  /** An API answer off the OpenAPI document becomes a 500 (for tests); else it is only logged. */
  readonly strictApiAnswers: boolean;
  /** Sign-ups per client address and hour. */
  readonly signupLimitPerHour: number;
  /** CIDRs of TLS-terminating proxies whose X-Forwarded-For and X-Forwarded-Proto are believed. */
  readonly trustProxy: readonly string[];
  /** CIDRs of TCP balancers that must start each proxy and SOCKS5 connection with a PROXY header. */
  readonly proxyProtocolFrom: readonly string[];
  /**
   * CIDRs of TCP balancers in front of the hub that must start each agent's connection
   * with a PROXY header: the hub proves exit IPs by the address a connection comes from.
   */
  readonly hubProxyProtocolFrom: readonly string[];
  /** The first webhook retry's delay; the later ones are multiples of it. */
  readonly webhookRetryBaseMs: number;
  /** CIDRs webhooks may reach although not public, and the only places plain http may go. */
  readonly webhookAllowTargets: readonly string[];
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

/** A configuration mistake, always naming the variable it is about. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  constructor(
    readonly variable: string,
    readonly reason: string,
  ) {
    super(`${variable}: ${reason}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads and validates the environment; throws ConfigError on the first bad variable. */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };

  const databaseUrl = optionalUrl('DATABASE_URL', read('DATABASE_URL'), [
    'postgres:',
    'postgresql:',
  ]);
  const redisUrl = optionalUrl('REDIS_URL', read('REDIS_URL'), ['redis:', 'rediss:']);
  const listenHost = host('HOST', read('HOST') ?? '127.0.0.1');
  const config: Config = {
    host: listenHost,
    publicHost: host(
      'PUBLIC_HOST',
      read('PUBLIC_HOST') ?? (['0.0.0.0', '::'].includes(listenHost) ? '127.0.0.1' : listenHost),
    ),
    apiPort: port('API_PORT', read('API_PORT') ?? '8080'),
    proxyPort: port('PROXY_PORT', read('PROXY_PORT') ?? '8000'),
    socksPort: port('SOCKS_PORT', read('SOCKS_PORT') ?? '1080'),
    hubPort: port('HUB_PORT', read('HUB_PORT') ?? '7000'),
    peerPort: port('PEER_PORT', read('PEER_PORT') ?? '0'),
    peerHost: optional(read('PEER_HOST'), (raw) => host('PEER_HOST', raw)),
    workers: workers(read('WORKERS'), databaseUrl !== undefined && redisUrl !== undefined),
    dataDir: path.resolve(cwd, read('DATA_DIR') ?? 'data'),
    databaseUrl,
    redisUrl,
    tls: tlsFiles(read, cwd),
    stripeSecretKey: prefixed('STRIPE_SECRET_KEY', read('STRIPE_SECRET_KEY'), ['sk_', 'rk_']),
    stripeWebhookSecret: prefixed('STRIPE_WEBHOOK_SECRET', read('STRIPE_WEBHOOK_SECRET'), [
      'whsec_',
    ]),
    stripeApiUrl: stripeApiUrl(
      'STRIPE_API_URL',
      read('STRIPE_API_URL') ?? 'https://api.stripe.com',
    ),
    portalUrl: optionalUrl('PORTAL_URL', read('PORTAL_URL'), ['http:', 'https:']),
    trustDeclaredLocation: bool(
      'TRUST_DECLARED_LOCATION',
      read('TRUST_DECLARED_LOCATION'),
      databaseUrl === undefined,
    ),
    geoIpDb: readableFiles('GEOIP_DB', read('GEOIP_DB'), cwd),
    asnDb: readableFiles('ASN_DB', read('ASN_DB'), cwd),
    logLevel: oneOf('LOG_LEVEL', read('LOG_LEVEL') ?? 'info', LOG_LEVELS),
    billingCurrency: currency('BILLING_CURRENCY', read('BILLING_CURRENCY') ?? 'usd'),
    trialCreditMicro: money('TRIAL_CREDIT', read('TRIAL_CREDIT') ?? '2.00'),
    payoutHoldDays: integer('PAYOUT_HOLD_DAYS', read('PAYOUT_HOLD_DAYS') ?? '14', 0, 365),
    payoutMinimumMicro: money('PAYOUT_MINIMUM', read('PAYOUT_MINIMUM') ?? '20.00'),
    shutdownGraceMs: integer('SHUTDOWN_GRACE_MS', read('SHUTDOWN_GRACE_MS') ?? '3000', 0, 60_000),
    shutdownDelayMs: integer('SHUTDOWN_DELAY_MS', read('SHUTDOWN_DELAY_MS') ?? '0', 0, 60_000),
    upstreamAllowTargets: cidrList('UPSTREAM_ALLOW_TARGETS', read('UPSTREAM_ALLOW_TARGETS')),
    upstreamAllowProxies: cidrList('UPSTREAM_ALLOW_PROXIES', read('UPSTREAM_ALLOW_PROXIES')),
    upstreamProbeIntervalMs: integer(
      'UPSTREAM_PROBE_INTERVAL_MS',
      read('UPSTREAM_PROBE_INTERVAL_MS') ?? '10000',
      100,
      300_000,
    ),
    nodeHealth: nodeHealth(read),
    usageFlushIntervalMs: integer(
      'USAGE_FLUSH_INTERVAL_MS',
      read('USAGE_FLUSH_INTERVAL_MS') ?? '5000',
      100,
      60_000,
    ),
    allowanceChunkBytes: integer(
      'ALLOWANCE_CHUNK_BYTES',
      read('ALLOWANCE_CHUNK_BYTES') ?? '1048576',
      65_536,
      67_108_864,
    ),
    authFailureLimit: integer(
      'AUTH_FAILURE_LIMIT',
      read('AUTH_FAILURE_LIMIT') ?? '30',
      1,
      1_000_000,
    ),
    gatewayTimeouts: {
      handshakeMs: integer(
        'PROXY_HANDSHAKE_TIMEOUT_MS',
        read('PROXY_HANDSHAKE_TIMEOUT_MS') ?? '10000',
        100,
        300_000,
      ),
      outageGraceMs: integer('OUTAGE_GRACE_MS', read('OUTAGE_GRACE_MS') ?? '300000', 0, 3_600_000),
    },
    metricsToken: token('METRICS_TOKEN', read('METRICS_TOKEN')),
    strictApiAnswers: bool('STRICT_API_ANSWERS', read('STRICT_API_ANSWERS'), false),
    signupLimitPerHour: integer(
      'SIGNUP_LIMIT_PER_HOUR',
      read('SIGNUP_LIMIT_PER_HOUR') ?? '5',
      1,
      1_000_000,
    ),
    trustProxy: cidrList('TRUST_PROXY', read('TRUST_PROXY')),
    proxyProtocolFrom: cidrList('PROXY_PROTOCOL_FROM', read('PROXY_PROTOCOL_FROM')),
    hubProxyProtocolFrom: cidrList('HUB_PROXY_PROTOCOL_FROM', read('HUB_PROXY_PROTOCOL_FROM')),
    webhookRetryBaseMs: integer(
      'WEBHOOK_RETRY_BASE_MS',
      read('WEBHOOK_RETRY_BASE_MS') ?? '30000',
      1,
      3_600_000,
    ),
    webhookAllowTargets: cidrList('WEBHOOK_ALLOW_TARGETS', read('WEBHOOK_ALLOW_TARGETS')),
  };

  for (const [gone, instead] of REPLACED) {
    if (read(gone) !== undefined) throw new ConfigError(gone, `is no longer read: ${instead}`);
  }
  if (config.stripeWebhookSecret && !config.stripeSecretKey) {
    throw new ConfigError('STRIPE_WEBHOOK_SECRET', 'is set but STRIPE_SECRET_KEY is not');
  }
  if (config.stripeSecretKey && !config.stripeWebhookSecret) {
    // Checkout would take the customer's money and nothing would ever credit it.
    throw new ConfigError(
      'STRIPE_WEBHOOK_SECRET',
      'is required with STRIPE_SECRET_KEY: card payments are credited by the webhook',
    );
  }
  distinctPorts(config);
  return Object.freeze(config);
}

/** A URL with any password replaced, safe for logs and error lines. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

function port(name: string, raw: string): number {
  if (!/^\d{1,5}$/.test(raw))
    throw new ConfigError(name, `"${raw}" is not a port number (0-65535)`);
  const value = Number(raw);
  if (value > 65535) throw new ConfigError(name, `${value} is out of range (0-65535)`);
  return value;
}

function optional<T>(raw: string | undefined, parse: (raw: string) => T): T | undefined {
  return raw === undefined ? undefined : parse(raw);
}

/**
 * One process per core when the state is shared (PostgreSQL and Redis); one otherwise,
 * since PGlite's files and in-process hot state belong to a single process.
 */
function workers(raw: string | undefined, shared: boolean): number {
  const cores = availableParallelism();
  if (raw === undefined) return shared ? cores : 1;
  const count = raw === 'auto' ? cores : integer('WORKERS', raw, 1, 256);
  if (count > 1 && !shared) {
    throw new ConfigError(
      'WORKERS',
      `${count} workers need DATABASE_URL and REDIS_URL: PGlite and in-process state serve one process`,
    );
  }
  return count;
}

function integer(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `"${raw}" is not a whole number`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `${value} is out of range (${min}-${max})`);
  }
  return value;
}

/**
 * PING every 2 s, answer within 4 s: a node that stopped reading leaves the pool at most
 * 6 s after its last answer. The answer queues behind what the node is sending; 4 s is
 * a full 4 MB send buffer (Linux's tcp_wmem ceiling) on an 8 Mbit/s uplink, and a node
 * slower than that would give customers multi-second handshakes anyway.
 */
function nodeHealth(read: (name: string) => string | undefined): Config['nodeHealth'] {
  const health = {
    pingIntervalMs: integer(
      'HUB_PING_INTERVAL_MS',
      read('HUB_PING_INTERVAL_MS') ?? '2000',
      100,
      60_000,
    ),
    pingTimeoutMs: integer(
      'HUB_PING_TIMEOUT_MS',
      read('HUB_PING_TIMEOUT_MS') ?? '4000',
      100,
      60_000,
    ),
    streamFailureLimit: integer(
      'HUB_STREAM_FAILURE_LIMIT',
      read('HUB_STREAM_FAILURE_LIMIT') ?? '3',
      1,
      1_000,
    ),
    probeBackoffMs: integer(
      'HUB_PROBE_BACKOFF_MS',
      read('HUB_PROBE_BACKOFF_MS') ?? '5000',
      100,
      3_600_000,
    ),
    probeBackoffMaxMs: integer(
      'HUB_PROBE_BACKOFF_MAX_MS',
      read('HUB_PROBE_BACKOFF_MAX_MS') ?? '300000',
      100,
      86_400_000,
    ),
  };
  if (health.probeBackoffMaxMs < health.probeBackoffMs) {
    throw new ConfigError(
      'HUB_PROBE_BACKOFF_MAX_MS',
      `${health.probeBackoffMaxMs} is below HUB_PROBE_BACKOFF_MS (${health.probeBackoffMs})`,
    );
  }
  return Object.freeze(health);
}

function host(name: string, raw: string): string {
  const hostname =
    /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
  if (isIP(raw) === 0 && !hostname.test(raw)) {
    throw new ConfigError(name, `"${raw}" is not an IP address or host name`);
  }
  return raw;
}

/**
 * Comma-separated CIDRs (`127.0.0.1/32,fd00::/8`), each a strict IP literal and a prefix
 * no longer than its family allows; unset is none.
 */
function cidrList(name: string, raw: string | undefined): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const cidrs = raw.split(',').map((part) => part.trim());
  for (const cidr of cidrs) {
    const match = /^([^/]+)\/(0|[1-9][0-9]{0,2})$/.exec(cidr);
    const family = match ? isIP(match[1] as string) : 0;
    const bits = family === 4 ? 32 : 128;
    if (!match || family === 0 || cidr.includes('%') || Number(match[2]) > bits) {
      throw new ConfigError(
        name,
        `"${cidr}" is not a CIDR (expected a comma-separated list such as 127.0.0.1/32,fd00::/8)`,
      );
    }
  }
  return Object.freeze(cidrs);
}

/**
 * Comma-separated paths of files the server will read (relative to the working
 * directory); unset is none. Their content is judged when they are loaded, since they
 * may be replaced while the server runs.
 */
function readableFiles(name: string, raw: string | undefined, cwd: string): string[] | undefined {
  if (raw === undefined) return undefined;
  const files = raw.split(',').map((part) => path.resolve(cwd, part.trim()));
  for (const file of files) {
    let stats: ReturnType<typeof statSync>;
    try {
      stats = statSync(file);
      accessSync(file, constants.R_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(name, `"${file}" cannot be read (${code})`);
    }
    if (!stats.isFile()) throw new ConfigError(name, `"${file}" is not a file`);
  }
  return Object.freeze(files) as string[];
}

/** Both files or neither; whether they hold a matching certificate and key is judged on loading. */
function tlsFiles(read: (name: string) => string | undefined, cwd: string): TlsFiles | undefined {
  const file = (name: string) => {
    const raw = read(name);
    if (raw?.includes(','))
      throw new ConfigError(name, 'takes one file (a chain goes in one file)');
    return readableFiles(name, raw, cwd)?.[0];
  };
  const certFile = file('TLS_CERT_FILE');
  const keyFile = file('TLS_KEY_FILE');
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined) {
    throw new ConfigError('TLS_CERT_FILE', 'is required with TLS_KEY_FILE');
  }
  if (keyFile === undefined)
    throw new ConfigError('TLS_KEY_FILE', 'is required with TLS_CERT_FILE');
  return Object.freeze({ certFile, keyFile });
}

/** Settings of earlier releases that would silently do nothing now. */
const REPLACED: ReadonlyArray<readonly [string, string]> = [
  ['TRIAL_CREDIT_BYTES', 'balances are money now; set TRIAL_CREDIT (e.g. 2.00)'],
  [
    'NODE_EARNINGS_MINOR_PER_GB',
    'operator rates are per exit type in the database (npm run admin -- prices)',
  ],
  ['NODE_EARNINGS_CURRENCY', 'set BILLING_CURRENCY'],
];

/** An amount of the currency with at most six decimals (`2`, `2.50`), as micro-units; not negative. */
function money(name: string, raw: string): number {
  const micro = parseMoney(raw);
  if (micro === null || micro < 0 || micro > 1_000_000 * MICRO_PER_UNIT) {
    throw new ConfigError(
      name,
      `"${raw}" is not an amount from 0 to 1000000 with at most six decimals (e.g. 2.50)`,
    );
  }
  return micro;
}

function currency(name: string, raw: string): string {
  if (!/^[A-Za-z]{3}$/.test(raw)) {
    throw new ConfigError(name, `"${raw}" is not a three-letter ISO 4217 currency code`);
  }
  return raw.toLowerCase();
}

function token(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!/^[\x21-\x7e]{24,256}$/.test(raw)) {
    throw new ConfigError(name, 'must be 24-256 visible ASCII characters (a random token)');
  }
  return raw;
}

function bool(name: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  const value = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(name, `"${raw}" is not a boolean (use true/false, on/off, 1/0)`);
}

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const value = raw.toLowerCase() as T;
  if (!allowed.includes(value)) {
    throw new ConfigError(name, `"${raw}" is not one of ${allowed.join(', ')}`);
  }
  return value;
}

function optionalUrl(
  name: string,
  raw: string | undefined,
  protocols: readonly string[],
): string | undefined {
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(
      name,
      `scheme "${parsed.protocol}" is not supported (use ${protocols.map((p) => `${p}//`).join(' or ')})`,
    );
  }
  if (!parsed.hostname) throw new ConfigError(name, 'has no host');
  return raw;
}

/** An http(s) origin with nothing after it: the Stripe client takes a host, port and protocol. */
function stripeApiUrl(name: string, raw: string): string {
  const url = optionalUrl(name, raw, ['https:', 'http:']) as string;
  const parsed = new URL(url);
  if (parsed.pathname !== '/' || parsed.search || parsed.hash || parsed.username) {
    throw new ConfigError(name, 'must be an origin only, such as https://api.stripe.com');
  }
  return parsed.origin;
}

function prefixed(
  name: string,
  raw: string | undefined,
  prefixes: readonly string[],
): string | undefined {
  if (raw === undefined) return undefined;
  if (!prefixes.some((prefix) => raw.startsWith(prefix))) {
    throw new ConfigError(
      name,
      `does not look like a Stripe value (expected ${prefixes.join(' or ')}...)`,
    );
  }
  return raw;
}

function distinctPorts(config: Config): void {
  const seen = new Map<number, string>();
  for (const [name, value] of [
    ['API_PORT', config.apiPort],
    ['PROXY_PORT', config.proxyPort],
    ['SOCKS_PORT', config.socksPort],
    ['HUB_PORT', config.hubPort],
    ['PEER_PORT', config.peerPort],
  ] as const) {
    if (value === 0) continue; // 0 asks the OS for a free port each time
    const other = seen.get(value);
    if (other) throw new ConfigError(name, `${value} is already taken by ${other}`);
    seen.set(value, name);
  }
}
