/**
 * The agent's command line: what it accepts, and how it refuses the rest (one line on
 * stderr naming the option, exit status 2, no stack, nothing dialled).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CliUsageError, DEFAULT_MAX_STREAMS, parseCli, TOKEN_ENV } from '../src/cli-options.ts';
import { foreignAddress, spawnAgent } from './support/agent-process.ts';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Port 9 (discard) on loopback: never dialled, since every case here is refused first. */
const HUB = ['--hub', '127.0.0.1:9'];
const EXIT = ['--exit-ip', '127.0.0.12'];
const TOKEN = ['--token', 'secret-node-token'];

/** Runs the CLI and expects exit 2 with exactly one stderr line starting with `prefix`. */
async function assertRefused(args: readonly string[], prefix: string, env = {}): Promise<string> {
  const child = spawnAgent(args, env);
  cleanups.push(() => child.stop());
  const exit = await child.exited;
  const stderr = child.stderr();
  assert.deepEqual(exit, { code: 2, signal: null }, `stderr: ${stderr}`);
  const lines = stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
  const [line = ''] = lines;
  assert.ok(line.startsWith(`ipcola-agent: ${prefix}`), line);
  assert.ok(!line.includes('    at '), 'no stack trace');
  assert.ok(!line.includes('secret-node-token'), 'the token is never echoed');
  assert.equal(child.logs.length, 0, 'nothing was logged: the agent never started');
  return line;
}

describe('the agent process refuses bad input', { timeout: 60_000 }, () => {
  test('missing --hub', async () => {
    await assertRefused([...TOKEN, ...EXIT], '--hub: required');
  });

  test('missing token (neither --token nor the environment variable)', async () => {
    await assertRefused([...HUB, ...EXIT], '--token: required');
  });

  test('missing --exit-ip', async () => {
    await assertRefused([...HUB, ...TOKEN], '--exit-ip: required');
  });

  test('an --exit-ip that is not an address', async () => {
    await assertRefused([...HUB, ...TOKEN, '--exit-ip', 'eth0'], '--exit-ip: "eth0" is not an IP');
  });

  test('an --exit-ip that is not on this machine', async () => {
    const address = foreignAddress();
    const line = await assertRefused([...HUB, ...TOKEN, '--exit-ip', address], '--exit-ip:');
    assert.ok(line.includes(`${address} is not an address of this machine`), line);
  });

  test('a country ISO has not assigned, which no gateway could ever target', async () => {
    const unassigned = await assertRefused(
      [...HUB, ...TOKEN, ...EXIT, '--country', 'xx'],
      '--country:',
    );
    assert.match(unassigned, /"xx" is not an assigned ISO 3166-1 alpha-2 code/);
    const uk = await assertRefused([...HUB, ...TOKEN, ...EXIT, '--country', 'UK'], '--country:');
    assert.match(uk, /"UK" is not an ISO 3166-1 code; use 'gb' for the United Kingdom/);
  });

  test('a bad --type', async () => {
    await assertRefused([...HUB, ...TOKEN, ...EXIT, '--type', 'satellite'], '--type:');
  });

  test('a bad --allow-target', async () => {
    await assertRefused(
      [...HUB, ...TOKEN, ...EXIT, '--allow-target', '10.0.0.0/33'],
      '--allow-target:',
    );
    await assertRefused(
      [...HUB, ...TOKEN, ...EXIT, '--allow-target', 'intranet'],
      '--allow-target:',
    );
  });

  test('an unknown option', async () => {
    await assertRefused([...HUB, ...TOKEN, ...EXIT, '--exit-ips', '127.0.0.13'], '--exit-ips:');
  });

  test('--help prints the usage and exits 0', async () => {
    const child = spawnAgent(['--help']);
    cleanups.push(() => child.stop());
    const exit = await child.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(child.logs.some((line) => line.msg.startsWith('Usage: npm run agent --')));
  });
});

/** Every address is local, as if on a machine with a pool. */
const everyAddressLocal = {
  localAddresses: () => new Set(['127.0.0.1', '198.51.100.7', '198.51.100.8', '2001:db8::7']),
  platform: 'linux' as const,
};

function parse(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const command = parseCli(args, env, everyAddressLocal);
  assert.equal(command.command, 'run');
  return command.options;
}

/** A certificate made by the openssl CLI, as PEM. */
async function selfSignedPem(): Promise<string> {
  const { stdout } = await promisify(execFile)('sh', [
    '-c',
    'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ' +
      '-keyout /dev/null -days 1 -subj /CN=test-ca 2>/dev/null',
  ]);
  return stdout;
}

function refusal(args: readonly string[], env: NodeJS.ProcessEnv = {}): CliUsageError {
  try {
    parseCli(args, env, everyAddressLocal);
  } catch (error) {
    assert.ok(error instanceof CliUsageError, String(error));
    return error;
  }
  assert.fail(`accepted ${args.join(' ')}`);
}

describe('parseCli', () => {
  test('a full command line, normalised', () => {
    const options = parse([
      '--hub',
      'hub.example.com:7000',
      '--token',
      'tok',
      '--exit-ip',
      '198.51.100.7',
      '--exit-ip=2001:0db8:0::7',
      '--country',
      'DE',
      '--region',
      'Bavaria',
      '--city',
      'munich',
      '--asn',
      'AS3320',
      '--type',
      'datacenter',
      '--allow-target',
      '10.0.0.0/8',
      '--allow-target',
      'fd00::/8',
      '--max-streams',
      '1000',
      '--tls',
      '--tunnel',
      'v1',
      '--log-level',
      'warn',
    ]);
    assert.deepEqual(options, {
      hubs: ['hub.example.com:7000'],
      token: 'tok',
      exitIps: ['198.51.100.7', '2001:db8::7'],
      country: 'de',
      region: 'bavaria',
      city: 'munich',
      asn: 3320,
      type: 'datacenter',
      allowTargets: ['10.0.0.0/8', 'fd00::/8'],
      maxStreams: 1000,
      tls: true,
      tunnel: 'v1',
      logLevel: 'warn',
    });
  });

  test('defaults: residential, no location, no exceptions to the policy, plain TCP', () => {
    const options = parse(['--hub', '[::1]:7000', '--token', 't', '--exit-ip', '127.0.0.12']);
    assert.deepEqual(options, {
      hubs: ['[::1]:7000'],
      token: 't',
      exitIps: ['127.0.0.12'],
      type: 'residential',
      allowTargets: [],
      maxStreams: DEFAULT_MAX_STREAMS,
      tls: false,
      tunnel: 'auto',
      logLevel: 'info',
    });
  });

  test(`the token may come from ${TOKEN_ENV}; --token wins over it`, () => {
    const base = ['--hub', 'h:1', '--exit-ip', '127.0.0.12'];
    assert.equal(parse(base, { [TOKEN_ENV]: 'from-env' }).token, 'from-env');
    assert.equal(parse([...base, '--token', 'flag'], { [TOKEN_ENV]: 'from-env' }).token, 'flag');
    assert.equal(refusal(base, { [TOKEN_ENV]: 'has space' }).option, TOKEN_ENV);
  });

  test('any 127/8 address is local on Linux, not elsewhere', () => {
    const args = ['--hub', 'h:1', '--token', 't', '--exit-ip', '127.0.0.99'];
    assert.deepEqual(parse(args).exitIps, ['127.0.0.99']);
    assert.throws(
      () =>
        parseCli(args, {}, { localAddresses: () => new Set(['127.0.0.1']), platform: 'darwin' }),
      (error: unknown) => error instanceof CliUsageError && error.option === '--exit-ip',
    );
  });

  const base = ['--hub', 'h:1', '--token', 't', '--exit-ip', '127.0.0.12'];
  const cases: Array<[string, string[], string]> = [
    ['a hub without a port', ['--hub', 'hub.example.com', '--token', 't', ...EXIT], '--hub'],
    ['a hub with port 0', ['--hub', 'h:0', '--token', 't', ...EXIT], '--hub'],
    ['a hub option without its value', ['--hub', '--token', 't', ...EXIT], '--hub'],
    ['a token with a space', ['--hub', 'h:1', '--token', 'a b', ...EXIT], '--token'],
    ['an unspecified exit IP', [...base, '--exit-ip', '0.0.0.0'], '--exit-ip'],
    ['a duplicate exit IP', [...base, '--exit-ip', '127.0.0.12'], '--exit-ip'],
    ['an IPv4-mapped exit IP', [...base.slice(0, 4), '--exit-ip', '::ffff:127.0.0.1'], '--exit-ip'],
    ['an exit IP with a zone id', [...base.slice(0, 4), '--exit-ip', 'fe80::1%eth0'], '--exit-ip'],
    ['a three-letter country', [...base, '--country', 'DEU'], '--country'],
    ['an unassigned country', [...base, '--country', 'xx'], '--country'],
    [
      'uk, which ISO reserved but did not assign (gb is)',
      [...base, '--country', 'uk'],
      '--country',
    ],
    ['a city with a space', [...base, '--city', 'new york'], '--city'],
    ['an ASN of 0', [...base, '--asn', '0'], '--asn'],
    ['a non-numeric ASN', [...base, '--asn', 'telekom'], '--asn'],
    ['max-streams of 0', [...base, '--max-streams', '0'], '--max-streams'],
    ['max-streams above the protocol limit', [...base, '--max-streams', '10001'], '--max-streams'],
    ['an unknown log level', [...base, '--log-level', 'verbose'], '--log-level'],
    ['an unknown tunnel version', [...base, '--tunnel', 'v3'], '--tunnel'],
    ['an allow-target without a prefix', [...base, '--allow-target', '10.0.0.1'], '--allow-target'],
    [
      'an allow-target prefix too long for IPv6',
      [...base, '--allow-target', '::/129'],
      '--allow-target',
    ],
    ['--tls with a value', [...base, '--tls=yes'], '--tls'],
    ['the same hub given twice', [...base, '--hub', 'H:1'], '--hub'],
    ['an empty hub in a list', [...base.slice(2), '--hub', 'a:1,,b:1'], '--hub'],
    ['a --ca file that does not exist', [...base, '--ca', '/nonexistent/ca.pem'], '--ca'],
    ['a --ca file without a certificate', [...base, '--ca', '/etc/hostname'], '--ca'],
    ['a positional argument', [...base, 'extra'], '"extra"'],
    ['a short option that does not exist', [...base, '-x'], '-x'],
  ];
  for (const [what, args, option] of cases) {
    test(`refuses ${what}, naming ${option}`, () => {
      assert.equal(refusal(args).option, option);
    });
  }

  test('several hubs: --hub repeated and comma-separated, in the order given', () => {
    const args = ['--token', 't', '--exit-ip', '127.0.0.12', '--hub', 'a:7000, [::1]:7001'];
    assert.deepEqual(parse([...args, '--hub', 'b.example:7000']).hubs, [
      'a:7000',
      '[::1]:7001',
      'b.example:7000',
    ]);
  });

  test('--ca reads the PEM bundle and implies TLS', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-agent-ca-'));
    try {
      const file = path.join(dir, 'ca.pem');
      const pem = await selfSignedPem();
      await writeFile(file, `# a comment before\n${pem}\n${pem}`);
      const options = parse([...base, '--ca', file]);
      assert.deepEqual(options.tls, { ca: [pem.trim(), pem.trim()], caFile: file });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--help wins over everything else', () => {
    assert.deepEqual(parseCli(['--bogus', '-h'], {}, everyAddressLocal), { command: 'help' });
  });
});
