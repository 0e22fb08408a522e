/**
 * The agent's command line: `ipcola-agent --hub HOST:PORT --token TOKEN --exit-ip IP ...`.
 *
 * Parsing is strict and complete before anything touches the network: every option is
 * checked here, and a bad one is reported as a CliUsageError naming it, which main.ts
 * prints as one line (`ipcola-agent: --exit-ip: ...`) before exiting with status 2.
 *
 * node:util parseArgs runs in its tolerant mode with tokens so that each refusal can
 * name the option it is about (its strict mode throws errors that name it only inside
 * their message text); the strictness is then applied here, token by token.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces, platform } from 'node:os';
import { parseArgs } from 'node:util';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import {
  canonicalIp,
  HELLO_MAX_EXIT_IPS,
  HELLO_MAX_STREAMS,
  parseAuthority,
} from '@ipcola/shared/protocol';
import {
  ASN_MAX,
  checkCountry as checkCountryCode,
  EXIT_TYPES,
  type ExitLocation,
  type ExitType,
  isSlug,
  SLUG_RULE,
} from '@ipcola/shared/targeting';
import ipaddr from 'ipaddr.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `--tunnel`: which tunnel versions the agent offers the hub. */
export const TUNNEL_CHOICES = ['auto', 'v1', 'v2'] as const;
export type TunnelChoice = (typeof TUNNEL_CHOICES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The environment variable that may carry the node token instead of `--token`. */
export const TOKEN_ENV = 'IPCOLA_NODE_TOKEN';

export const DEFAULT_MAX_STREAMS = 256;

/** Exit status when another agent with the same node token replaced this one. */
export const EXIT_REPLACED = 3;

/** Its location fields are what the hello announces; absent when not given. */
export interface AgentOptions extends ExitLocation {
  /** `host:port` or `[v6]:port` of each hub, as given, in the order given; at least one. */
  readonly hubs: readonly string[];
  readonly token: string;
  /** Canonical addresses of this machine, in the order given, at least one. */
  readonly exitIps: readonly string[];
  readonly type: ExitType;
  /** CIDRs the exit policy lets through although their range is refused by default. */
  readonly allowTargets: readonly string[];
  readonly maxStreams: number;
  /** Dial the hub with TLS: false, true (the system's CAs), or the CA certificates to trust. */
  readonly tls: boolean | { readonly ca: readonly string[]; readonly caFile: string };
  /** auto: v2 with a hub that speaks it, else v1; v1 or v2: that one only. */
  readonly tunnel: TunnelChoice;
  readonly logLevel: LogLevel;
}

export type CliCommand = { command: 'help' } | { command: 'run'; options: AgentOptions };

/** A refusal of the command line; `option` is what the one-line message names. */
export class CliUsageError extends Error {
  readonly code = 'cli_usage';
  readonly option: string;
  readonly reason: string;
  constructor(option: string, reason: string) {
    super(`${option}: ${reason}`);
    this.name = 'CliUsageError';
    this.option = option;
    this.reason = reason;
  }
}

export interface ParseDependencies {
  /** The addresses of this machine (canonical text); defaults to os.networkInterfaces(). */
  readonly localAddresses?: () => ReadonlySet<string>;
  /** process.platform; on Linux the whole of 127.0.0.0/8 is local. */
  readonly platform?: NodeJS.Platform;
}

export const USAGE = `Usage: npm run agent -- --hub HOST:PORT --token TOKEN --exit-ip IP [options]
       (or, from agent/: node --import tsx src/main.ts ...)

An IPCola exit node: dials out to the hub and carries customer connections
from this machine's exit IPs. It never listens on a port.

Required:
  --hub HOST:PORT          the hub to dial (HUB_PORT of the server, default 7000);
                           repeat it or give a comma-separated list for several
                           hubs (--hub a:7000,b:7000), tried in that order; a name
                           with several A/AAAA records stands for each address
  --token TOKEN            the node token from POST /v1/nodes; prefer the
                           ${TOKEN_ENV} environment variable, which keeps it out of
                           the process list (--token wins when both are set)
  --exit-ip IP             an address of this machine to send traffic from;
                           repeat for a pool (at most ${HELLO_MAX_EXIT_IPS})

Announced location and kind (what customers target):
  --country CC             assigned ISO 3166-1 alpha-2 code, e.g. de (gb, not uk)
  --region R               region slug, e.g. california
  --city C                 city slug, e.g. new_york
  --asn N                  autonomous system number, e.g. 3320 or AS3320
  --type TYPE              residential (default), datacenter or mobile

Exit policy:
  --allow-target CIDR      let customers reach this range although it is private,
                           loopback, link-local...; repeatable (SMTP ports stay refused)

Running:
  --max-streams N          customer connections carried at once (default ${DEFAULT_MAX_STREAMS}, 1-${HELLO_MAX_STREAMS})
  --tls                    dial the hub with TLS, trusting the system's CAs; the
                           certificate must carry the --hub host name (or IP)
  --ca FILE                dial the hub with TLS, trusting the CA certificates in
                           this PEM file (a private CA) instead; implies --tls
  --tunnel VERSION         auto (default: v2 with a hub that speaks it, else v1),
                           v1 (HTTP/2, as agents before v2) or v2 only
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info)
  -h, --help               show this text

Several hubs: the agent attaches to one at a time. When that connection is lost,
or the hub says it is going away (a restart), it dials the next address at once;
when every address failed, it waits 0.25-0.5 s and tries the list again, the wait
doubling per failed round up to 15-30 s. Names are resolved again each round.

Logs are JSON lines on stdout. SIGTERM or SIGINT drains: no new connections, open
ones get up to 30 s to finish; a second signal exits at once.

One agent per node token: when another agent connects with the same token, the
newer one takes the node and the older one logs why, finishes its open
connections and exits with status ${EXIT_REPLACED} instead of reconnecting (with systemd,
RestartPreventExitStatus=${EXIT_REPLACED} keeps it from being started again).

Exit status: 0 after a drain, 1 unexpected failure, 2 bad command line,
${EXIT_REPLACED} replaced by another agent with the same token, 128+N second signal N.
`;

const OPTIONS = {
  hub: { type: 'string', multiple: true },
  token: { type: 'string' },
  'exit-ip': { type: 'string', multiple: true },
  country: { type: 'string' },
  region: { type: 'string' },
  city: { type: 'string' },
  asn: { type: 'string' },
  type: { type: 'string' },
  'allow-target': { type: 'string', multiple: true },
  'max-streams': { type: 'string' },
  tls: { type: 'boolean' },
  ca: { type: 'string' },
  tunnel: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = keyof typeof OPTIONS;

const isOptionName = (name: string): name is OptionName => Object.hasOwn(OPTIONS, name);

/**
 * Reads the command line (without the `node script` prefix) and the environment.
 * Throws CliUsageError for anything it refuses.
 */
export function parseCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  dependencies: ParseDependencies = {},
): CliCommand {
  const values = readTokens(argv);
  if (values.has('help')) return { command: 'help' };

  const one = (name: OptionName): string | undefined => values.get(name)?.[0];
  const hubs = checkHubs(values.get('hub') ?? []);
  const ca = optional(one('ca'), checkCa);
  const token = checkToken(one('token'), env[TOKEN_ENV]);
  const exitIps = checkExitIps(values.get('exit-ip') ?? [], dependencies);
  const type = checkChoice('--type', one('type') ?? 'residential', EXIT_TYPES);
  const allowTargets = (values.get('allow-target') ?? []).map(checkAllowTarget);
  const maxStreams = checkInteger(
    '--max-streams',
    one('max-streams') ?? String(DEFAULT_MAX_STREAMS),
    1,
    HELLO_MAX_STREAMS,
  );
  const tunnel = checkChoice('--tunnel', one('tunnel') ?? 'auto', TUNNEL_CHOICES);
  const logLevel = checkChoice('--log-level', one('log-level') ?? 'info', LOG_LEVELS);

  const country = optional(one('country'), checkCountry);
  const region = optional(one('region'), (value) => checkSlug('--region', value, 'california'));
  const city = optional(one('city'), (value) => checkSlug('--city', value, 'new_york'));
  const asn = optional(one('asn'), checkAsn);

  return {
    command: 'run',
    options: {
      hubs,
      token,
      exitIps,
      ...(country === undefined ? {} : { country }),
      ...(region === undefined ? {} : { region }),
      ...(city === undefined ? {} : { city }),
      ...(asn === undefined ? {} : { asn }),
      type,
      allowTargets,
      maxStreams,
      tls: ca ?? values.has('tls'),
      tunnel,
      logLevel,
    },
  };
}

/** Every option's values, with parseArgs' strict-mode refusals made option by option. */
function readTokens(argv: readonly string[]): Map<OptionName, string[]> {
  const { tokens } = parseArgs({
    args: [...argv],
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values = new Map<OptionName, string[]>();
  // Asking for help is answered whatever else is on the line.
  if (tokens.some((token) => token.kind === 'option' && token.name === 'help')) {
    values.set('help', ['']);
    return values;
  }
  for (const token of tokens) {
    if (token.kind === 'positional') {
      throw new CliUsageError(
        JSON.stringify(token.value),
        'unexpected argument (every setting is an --option; see --help)',
      );
    }
    if (token.kind === 'option-terminator') {
      throw new CliUsageError('--', 'unexpected argument (see --help)');
    }
    const { name, rawName } = token;
    if (!isOptionName(name)) throw new CliUsageError(rawName, 'unknown option (see --help)');
    const config: { type: 'string' | 'boolean'; multiple?: boolean } = OPTIONS[name];
    const option = `--${name}`;
    let value = '';
    if (config.type === 'boolean') {
      if (token.value !== undefined) throw new CliUsageError(option, 'takes no value');
    } else {
      // Without its own value parseArgs takes the next argument whatever it is; an
      // option there means the value was forgotten (`--hub --token x`).
      if (token.value === undefined || (!token.inlineValue && token.value.startsWith('-'))) {
        throw new CliUsageError(option, 'needs a value');
      }
      value = token.value;
    }
    const seen = values.get(name);
    if (seen && !config.multiple) throw new CliUsageError(option, 'given more than once');
    if (seen) seen.push(value);
    else values.set(name, [value]);
  }
  return values;
}

function optional<T>(value: string | undefined, check: (value: string) => T): T | undefined {
  return value === undefined ? undefined : check(value);
}

/** At most this many hub addresses given (names may stand for more). */
const MAX_HUBS = 32;

function checkHubs(values: readonly string[]): string[] {
  const hubs = values.flatMap((value) => value.split(',')).map((part) => part.trim());
  if (hubs.length === 0) {
    throw new CliUsageError('--hub', 'required (HOST:PORT of the hub; several allowed)');
  }
  if (hubs.length > MAX_HUBS) throw new CliUsageError('--hub', `at most ${MAX_HUBS} hubs`);
  const seen = new Set<string>();
  for (const hub of hubs) {
    const parsed = parseAuthority(hub);
    if (!parsed) {
      throw new CliUsageError(
        '--hub',
        `${JSON.stringify(hub)} is not HOST:PORT (e.g. hub.example.com:7000 or [2001:db8::1]:7000)`,
      );
    }
    const key = `${parsed.host.toLowerCase()}:${parsed.port}`;
    if (seen.has(key)) throw new CliUsageError('--hub', `${hub} is given more than once`);
    seen.add(key);
  }
  return hubs;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** The CA certificates of a PEM file, each checked, so that a wrong file fails here. */
function checkCa(file: string): { ca: string[]; caFile: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new CliUsageError('--ca', `${JSON.stringify(file)} cannot be read (${code})`);
  }
  const ca = text.match(PEM_CERTIFICATE) ?? [];
  if (ca.length === 0) {
    throw new CliUsageError('--ca', `${JSON.stringify(file)} holds no PEM certificate`);
  }
  for (const pem of ca) {
    try {
      new X509Certificate(pem);
    } catch {
      throw new CliUsageError(
        '--ca',
        `${JSON.stringify(file)} holds a certificate that does not parse`,
      );
    }
  }
  return { ca, caFile: file };
}

/** Visible ASCII: the token travels in an HTTP header. */
const TOKEN = /^[\x21-\x7e]{1,4096}$/;

function checkToken(option: string | undefined, fromEnv: string | undefined): string {
  // The token itself never appears in a message.
  if (option !== undefined) {
    if (!TOKEN.test(option)) {
      throw new CliUsageError('--token', 'must be visible ASCII characters, without spaces');
    }
    return option;
  }
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!TOKEN.test(fromEnv)) {
      throw new CliUsageError(TOKEN_ENV, 'must be visible ASCII characters, without spaces');
    }
    return fromEnv;
  }
  throw new CliUsageError('--token', `required (or set ${TOKEN_ENV})`);
}

function checkExitIps(values: readonly string[], dependencies: ParseDependencies): string[] {
  if (values.length === 0) {
    throw new CliUsageError(
      '--exit-ip',
      'required: at least one address of this machine to send traffic from',
    );
  }
  if (values.length > HELLO_MAX_EXIT_IPS) {
    throw new CliUsageError('--exit-ip', `at most ${HELLO_MAX_EXIT_IPS} addresses`);
  }
  const local = (dependencies.localAddresses ?? machineAddresses)();
  const linux = (dependencies.platform ?? platform()) === 'linux';
  const exitIps: string[] = [];
  for (const value of values) {
    const canonical = canonicalIp(value);
    if (canonical === null) {
      throw new CliUsageError(
        '--exit-ip',
        `${JSON.stringify(value)} is not an IP address (no host names or zone ids)`,
      );
    }
    const parsed = ipaddr.parse(canonical);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
      throw new CliUsageError(
        '--exit-ip',
        `${value} is IPv4-mapped; give the IPv4 address ${(parsed as ipaddr.IPv6).toIPv4Address().toString()}`,
      );
    }
    const range = parsed.range();
    if (range === 'unspecified' || range === 'multicast' || range === 'broadcast') {
      throw new CliUsageError('--exit-ip', `${value} cannot be bound as a source address`);
    }
    // Linux answers for the whole of 127.0.0.0/8 on lo, listed or not.
    const isLocal =
      local.has(canonical) ||
      (linux && parsed.kind() === 'ipv4' && (parsed as ipaddr.IPv4).match(LOOPBACK_V4, 8));
    if (!isLocal) {
      throw new CliUsageError(
        '--exit-ip',
        `${value} is not an address of this machine (see \`ip addr\`)`,
      );
    }
    if (exitIps.includes(canonical)) {
      throw new CliUsageError('--exit-ip', `${value} is given more than once`);
    }
    exitIps.push(canonical);
  }
  return exitIps;
}

const LOOPBACK_V4 = ipaddr.IPv4.parse('127.0.0.0');

function machineAddresses(): ReadonlySet<string> {
  const addresses = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      const canonical = canonicalIp(entry.address);
      if (canonical !== null) addresses.add(canonical);
    }
  }
  return addresses;
}

function checkChoice<T extends string>(option: string, value: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new CliUsageError(option, `${JSON.stringify(value)} is not one of ${choices.join(', ')}`);
}

function checkInteger(option: string, value: string, min: number, max: number): number {
  const number = /^[0-9]{1,10}$/.test(value) ? Number(value) : Number.NaN;
  if (!(Number.isInteger(number) && number >= min && number <= max)) {
    throw new CliUsageError(
      option,
      `${JSON.stringify(value)} is not a whole number from ${min} to ${max}`,
    );
  }
  return number;
}

/** Refused at start: the hub would refuse the hello, and no gateway could target it. */
function checkCountry(value: string): string {
  const checked = checkCountryCode(value);
  if (!checked.ok) {
    throw new CliUsageError('--country', `${JSON.stringify(value)} ${checked.reason} (e.g. de)`);
  }
  return checked.code;
}

function checkSlug(option: string, value: string, example: string): string {
  const slug = value.toLowerCase();
  if (!isSlug(slug)) {
    throw new CliUsageError(
      option,
      `${JSON.stringify(value)} is not a slug: ${SLUG_RULE} (e.g. ${example})`,
    );
  }
  return slug;
}

function checkAsn(value: string): number {
  return checkInteger('--asn', value.replace(/^as/i, ''), 1, ASN_MAX);
}

/**
 * Checks one CIDR with reasons an operator can act on, then lets the exit policy, the
 * code that will use it, confirm it.
 */
function checkAllowTarget(value: string): string {
  const example = '(e.g. 127.0.0.1/32 or fd00::/8)';
  const match = /^([^/]+)\/([0-9]{1,3})$/.exec(value);
  if (!match) {
    throw new CliUsageError(
      '--allow-target',
      `${JSON.stringify(value)} is not a CIDR: address/prefix ${example}`,
    );
  }
  const [, address = '', prefixText = ''] = match;
  const family = isIP(address);
  if (family === 0) {
    throw new CliUsageError(
      '--allow-target',
      `${JSON.stringify(address)} in ${JSON.stringify(value)} is not an IP address ${example}`,
    );
  }
  const bits = family === 4 ? 32 : 128;
  if (Number(prefixText) > bits || (prefixText.length > 1 && prefixText.startsWith('0'))) {
    throw new CliUsageError(
      '--allow-target',
      `/${prefixText} in ${JSON.stringify(value)} is not a prefix length from 0 to ${bits}`,
    );
  }
  try {
    createExitPolicy({ allowTargets: [value] });
  } catch {
    throw new CliUsageError(
      '--allow-target',
      `${JSON.stringify(value)} is not a usable CIDR ${example}`,
    );
  }
  return value;
}
