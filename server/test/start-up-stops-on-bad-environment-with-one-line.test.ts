import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serverEnv, spawnServer } from './support/server-process.ts';

/** A port that nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('start-up refuses a bad environment with one clear line', { concurrency: 4 }, () => {
  let scratch: string;
  let occupied: Server;
  let occupiedPort: number;
  let refusingPort: number;

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ipcola-startup-'));
    await writeFile(path.join(scratch, 'a-file'), 'not a directory');
    occupied = createServer();
    await new Promise<void>((resolve) => occupied.listen(0, '127.0.0.1', resolve));
    occupiedPort = (occupied.address() as { port: number }).port;
    refusingPort = await closedPort();
  });
  after(async () => {
    await new Promise((resolve) => occupied.close(resolve));
    await rm(scratch, { recursive: true, force: true });
  });

  const cases: Array<{
    name: string;
    env: () => Record<string, string>;
    args?: string[];
    line: () => RegExp;
    secret?: string;
  }> = [
    {
      name: 'API_PORT=abc',
      env: () => ({ API_PORT: 'abc' }),
      line: () => /API_PORT: "abc" is not a port number/,
    },
    {
      name: 'PROXY_PORT=70000',
      env: () => ({ PROXY_PORT: '70000' }),
      line: () => /PROXY_PORT: 70000 is out of range/,
    },
    {
      name: 'SOCKS_PORT=-5',
      env: () => ({ SOCKS_PORT: '-5' }),
      line: () => /SOCKS_PORT: "-5" is not a port number/,
    },
    {
      name: 'HUB_PORT=7000.5',
      env: () => ({ HUB_PORT: '7000.5' }),
      line: () => /HUB_PORT: "7000.5" is not a port/,
    },
    {
      name: 'TRUST_PROXY=10.0.0.0/8,proxy.internal',
      env: () => ({ TRUST_PROXY: '10.0.0.0/8,proxy.internal' }),
      line: () => /TRUST_PROXY: "proxy.internal" is not a CIDR/,
    },
    {
      name: 'PROXY_PROTOCOL_FROM=haproxy',
      env: () => ({ PROXY_PROTOCOL_FROM: 'haproxy' }),
      line: () => /PROXY_PROTOCOL_FROM: "haproxy" is not a CIDR/,
    },
    {
      name: 'HUB_PROXY_PROTOCOL_FROM=10.0.0.0/33',
      env: () => ({ HUB_PROXY_PROTOCOL_FROM: '10.0.0.0/33' }),
      line: () => /HUB_PROXY_PROTOCOL_FROM: "10.0.0.0\/33" is not a CIDR/,
    },
    {
      name: 'SIGNUP_LIMIT_PER_HOUR=0',
      env: () => ({ SIGNUP_LIMIT_PER_HOUR: '0' }),
      line: () => /SIGNUP_LIMIT_PER_HOUR: 0 is out of range/,
    },
    {
      name: 'HOST with a space',
      env: () => ({ HOST: 'my host' }),
      line: () => /HOST: "my host" is not an IP address/,
    },
    {
      name: 'LOG_LEVEL=loud',
      env: () => ({ LOG_LEVEL: 'loud' }),
      line: () => /LOG_LEVEL: "loud" is not one of/,
    },
    {
      name: 'TRUST_DECLARED_LOCATION=maybe',
      env: () => ({ TRUST_DECLARED_LOCATION: 'maybe' }),
      line: () => /TRUST_DECLARED_LOCATION: "maybe" is not a boolean/,
    },
    {
      name: 'GEOIP_DB naming no file',
      env: () => ({ GEOIP_DB: '/nonexistent/GeoIP2-City.mmdb' }),
      line: () => /GEOIP_DB: "\/nonexistent\/GeoIP2-City.mmdb" cannot be read \(ENOENT\)/,
    },
    {
      name: 'STRIPE_SECRET_KEY=pk_live',
      env: () => ({ STRIPE_SECRET_KEY: 'pk_live_x' }),
      line: () => /STRIPE_SECRET_KEY: does not look like a Stripe value/,
    },
    {
      name: 'DATABASE_URL with a wrong scheme',
      env: () => ({ DATABASE_URL: 'mysql://root:hunter2@127.0.0.1/x' }),
      line: () => /DATABASE_URL: scheme "mysql:" is not supported/,
      secret: 'hunter2',
    },
    {
      name: 'DATABASE_URL that refuses',
      env: () => ({ DATABASE_URL: `postgres://ipcola:hunter2@127.0.0.1:${refusingPort}/ipcola` }),
      line: () =>
        new RegExp(
          `DATABASE_URL: cannot connect to 127.0.0.1:${refusingPort}/ipcola \\(ECONNREFUSED\\)`,
        ),
      secret: 'hunter2',
    },
    {
      name: 'REDIS_URL that refuses',
      env: () => ({
        REDIS_URL: `redis://:hunter2@127.0.0.1:${refusingPort}`,
        DATA_DIR: path.join(scratch, 'redis-refused'),
      }),
      line: () =>
        new RegExp(`REDIS_URL: cannot connect to 127.0.0.1:${refusingPort} \\(ECONNREFUSED\\)`),
      secret: 'hunter2',
    },
    {
      name: 'DATA_DIR that is a file',
      env: () => ({ DATA_DIR: path.join(scratch, 'a-file') }),
      line: () => /DATA_DIR: .*a-file cannot be used: a file is in the way/,
    },
    {
      name: 'DATA_DIR below a file',
      env: () => ({ DATA_DIR: path.join(scratch, 'a-file', 'data') }),
      line: () => /DATA_DIR: .* cannot be used: a file is in the way/,
    },
    {
      name: 'API_PORT already in use',
      env: () => ({ API_PORT: String(occupiedPort), DATA_DIR: path.join(scratch, 'port-in-use') }),
      line: () => new RegExp(`API_PORT: 127.0.0.1:${occupiedPort} is already in use`),
    },
    {
      name: 'HOST that is not an address of this machine',
      env: () => ({ HOST: '192.0.2.1', DATA_DIR: path.join(scratch, 'foreign-host') }),
      line: () => /HOST: 192.0.2.1 is not an address of this machine/,
    },
    {
      name: 'an unknown command-line option',
      env: () => ({}),
      args: ['--demoo'],
      line: () => /arguments: Unknown option '--demoo'/,
    },
  ];

  for (const c of cases) {
    test(`${c.name}: non-zero exit, one line naming the variable, no stack`, async () => {
      const spawned = spawnServer(
        serverEnv({ DATA_DIR: path.join(scratch, 'default'), ...c.env() }),
        c.args,
      );
      const code = await spawned.exited;
      const stderr = spawned.stderr();
      assert.notEqual(code, 0);
      const lines = stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, `exactly one line, got:\n${stderr}`);
      assert.match(lines[0] ?? '', /^ipcola: cannot start: /);
      assert.match(lines[0] ?? '', c.line());
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
      if (c.secret) assert.ok(!stderr.includes(c.secret), 'the password is not echoed');
      assert.ok(
        !spawned.logs.some((line) => line.ports),
        'it never reported itself up, so no listener was left serving',
      );
    });
  }

  test('a failure after the database was opened releases DATA_DIR again', async () => {
    const dataDir = path.join(scratch, 'released');
    const spawned = spawnServer(serverEnv({ API_PORT: String(occupiedPort), DATA_DIR: dataDir }));
    assert.notEqual(await spawned.exited, 0);
    assert.ok(existsSync(path.join(dataDir, 'pglite')), 'the database had been opened');
    assert.ok(!(await readdir(dataDir)).includes('ipcola.pid'), 'the lock was released');
  });
});
