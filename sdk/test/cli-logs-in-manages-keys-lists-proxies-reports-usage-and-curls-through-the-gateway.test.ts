import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ApiServer, startApiServer } from './support/api-server.ts';
import { runCli } from './support/cli.ts';
import { eventually } from './support/eventually.ts';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

let server: ApiServer;
let home: string;
let env: NodeJS.ProcessEnv;
const ipcola = (args: string[], input?: string) =>
  runCli([process.execPath, '--import', 'tsx', MAIN], args, env, input);

before(async () => {
  server = await startApiServer({ demo: true });
  home = await mkdtemp(path.join(tmpdir(), 'ipcola-cli-'));
  env = { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: path.join(home, 'xdg') };
});
after(async () => {
  await server?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

const configFile = () => path.join(home, 'xdg', 'ipcola', 'config.json');

test('without a key every command exits 3 with one line; a refused key is not stored', async () => {
  const none = await ipcola(['keys', 'list']);
  assert.equal(none.status, 3);
  assert.match(none.stderr, /^ipcola: not_logged_in: no API key: run `ipcola login`.*\n$/);

  const wrong = await ipcola([
    'login',
    '--api-url',
    server.apiUrl,
    '--key',
    `${server.key.id}.nope`,
  ]);
  assert.equal(wrong.status, 3);
  assert.match(wrong.stderr, /^ipcola: unauthorized: .*\(HTTP 401, request [0-9a-f-]+\)\n$/);
  await assert.rejects(stat(configFile()), { code: 'ENOENT' });

  const json = await ipcola(['keys', 'list', '--json']);
  assert.equal(json.status, 3);
  assert.equal(JSON.parse(json.stderr).error.code, 'not_logged_in');
});

test('login reads the key from stdin, checks it and stores it with the gateway address, readable by the owner only', async () => {
  const login = await ipcola(['login', '--api-url', server.apiUrl, '--json'], `${server.apiKey}\n`);
  assert.equal(login.status, 0, login.stderr);
  const shown = JSON.parse(login.stdout);
  assert.equal(shown.key_id, server.key.id);
  assert.equal(shown.proxy_url, `http://127.0.0.1:${server.ports.proxy}`);
  assert.equal(shown.config_file, configFile());

  assert.equal((await stat(configFile())).mode & 0o777, 0o600);
  assert.equal((await stat(path.dirname(configFile()))).mode & 0o777, 0o700);
  const stored = JSON.parse(await readFile(configFile(), 'utf8'));
  assert.deepEqual(stored, {
    apiKey: server.apiKey,
    apiUrl: server.apiUrl,
    proxyUrl: `http://127.0.0.1:${server.ports.proxy}`,
    socksUrl: `socks5h://127.0.0.1:${server.ports.socks}`,
  });
});

test('keys create, list and revoke, as tables and JSON; a second revoke exits 4 with the code', async () => {
  const created = await ipcola(['keys', 'create', '--name', 'from the cli', '--json']);
  assert.equal(created.status, 0, created.stderr);
  const key = JSON.parse(created.stdout);
  assert.deepEqual(key.scopes, ['proxy']);
  assert.equal(typeof key.secret, 'string');

  const listed = await ipcola(['keys', 'list', '--json']);
  assert.deepEqual(
    JSON.parse(listed.stdout).map((k: { id: string }) => k.id),
    [server.key.id, key.id],
  );
  const table = await ipcola(['keys', 'list']);
  assert.match(table.stdout, /^ID +NAME +SCOPES +DISABLED +CREATED\n/);
  assert.match(table.stdout, new RegExp(`\\n${key.id} +from the cli +proxy +false `));

  const revoked = await ipcola(['keys', 'revoke', key.id]);
  assert.equal(revoked.status, 0);
  assert.equal(revoked.stdout, `Revoked key ${key.id}.\n`);
  const again = await ipcola(['keys', 'revoke', key.id]);
  assert.equal(again.status, 4);
  assert.match(again.stderr, /^ipcola: not_found: .*\(HTTP 404, request [0-9a-f-]+\)\n$/);
  const againJson = await ipcola(['keys', 'revoke', key.id, '--json']);
  assert.equal(againJson.status, 4);
  assert.equal(JSON.parse(againJson.stderr).error.status, 404);
});

test('proxy-list prints the asked number of targeted proxy URLs', async () => {
  const list = await ipcola(['proxy-list', '--country', 'us', '--count', '5', '--format', 'url']);
  assert.equal(list.status, 0, list.stderr);
  const lines = list.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 5);
  for (const line of lines) {
    assert.match(line, new RegExp(`^http://${server.key.id}-country-us-session-\\w+-ttl-10m:`));
  }
  const bad = await ipcola(['proxy-list', '--format', 'xml']);
  assert.equal(bad.status, 2);
  assert.match(
    bad.stderr,
    /^ipcola: usage: --format is one of hostport, url, socks_url, curl, not xml\n$/,
  );
});

test('curl goes through the gateway with the targeting asked, sticky with a session, and exits with curl’s code', async () => {
  const target = server.targetUrl ?? '';
  const de = await ipcola(['curl', '--country', 'de', '-s', target]);
  assert.equal(de.status, 0, de.stderr);
  assert.match(de.stdout, /from 127\.0\.0\.12\b/);

  const exits = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const sticky = await ipcola([
      'curl',
      '--country',
      'us',
      '--session',
      'job42',
      '--',
      '-s',
      target,
    ]);
    assert.equal(sticky.status, 0, sticky.stderr);
    exits.add(sticky.stdout);
  }
  assert.equal(exits.size, 1);
  assert.match([...exits][0] ?? '', /from 127\.0\.0\.1[34]\b/);

  // No exit in France: the gateway refuses with 503, which curl -f makes exit 22.
  const refused = await ipcola(['curl', '--country', 'fr', '-s', '-f', target]);
  assert.equal(refused.status, 22);
  // What no gateway could serve is refused before curl runs, naming the option.
  const unassigned = await ipcola(['curl', '--country', 'zz', '-s', target]);
  assert.equal(unassigned.status, 2);
  assert.match(unassigned.stderr, /country/);
  const bad = await ipcola(['curl', '--session', 'not ok!', target]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /session/);
});

test('usage shows the traffic per key as a table, as the server’s CSV and as JSON', async () => {
  const report = await eventually(async () => {
    const json = await ipcola(['usage', '--json']);
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.ok(parsed.totals.requests >= 4, `requests so far: ${parsed.totals.requests}`);
    return parsed;
  }, 20_000);
  assert.ok(report.items.every((row: { key_id: string }) => row.key_id === server.key.id));

  const table = await ipcola(['usage']);
  assert.match(table.stdout, /^PERIOD +KEY +NAME +BYTES UP +BYTES DOWN +REQUESTS\n/);
  assert.match(
    table.stdout,
    new RegExp(`\\n\\S+ +${server.key.id} +sdk tests +\\d+ +\\d+ +\\d+\\n`),
  );
  assert.match(table.stdout, new RegExp(`\\ntotal +${report.totals.bytes_up} +`));

  const csv = await ipcola(['usage', '--csv']);
  // RFC 4180: CRLF line ends.
  const [header, ...rows] = csv.stdout.trimEnd().split('\r\n');
  assert.equal(header, 'period_start,key_id,key_name,bytes_up,bytes_down,requests');
  assert.ok(rows.length > 0 && rows.every((row) => row.includes(`,${server.key.id},`)));

  const bad = await ipcola(['usage', '--granularity', 'week']);
  assert.equal(bad.status, 2);
  const unknown = await ipcola(['bogus']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^ipcola: usage: unknown command bogus/);
});

test('the lines the demo prints work as printed: curl, npx ipcola login and npx ipcola curl', async () => {
  const printed = server.server.logs
    .map((line) => (typeof line.raw === 'string' ? line.raw.trim() : ''))
    .filter((line) => line.startsWith('curl ') || line.startsWith('npx ipcola '));
  assert.equal(
    printed.filter((line) => line.startsWith('npx ipcola ')).length,
    2,
    printed.join('\n'),
  );
  assert.equal(printed.filter((line) => line.startsWith('curl ')).length, 3);
  const demoHome = await mkdtemp(path.join(tmpdir(), 'ipcola-demo-lines-'));
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  try {
    for (const line of printed) {
      const ran = await runCli(
        ['bash', '-c'],
        [line],
        {
          PATH: process.env.PATH,
          HOME: demoHome,
          XDG_CONFIG_HOME: path.join(demoHome, 'xdg'),
        },
        undefined,
        repo,
      );
      assert.equal(ran.status, 0, `${line}\n${ran.stderr}`);
      if (line.includes(' login ')) assert.match(ran.stdout, /^Logged in to /);
      else assert.match(ran.stdout, /you reached this target from 127\.0\.0\.1[234]\n?$/);
    }
  } finally {
    await rm(demoHome, { recursive: true, force: true });
  }
});
