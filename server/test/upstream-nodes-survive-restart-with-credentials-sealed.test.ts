/**
 * Upstream-proxy nodes are durable and their credentials are sealed at rest: a server
 * restarted on the same data directory carries traffic through a node registered before
 * the restart, and nothing on disk holds the proxy's password in clear.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { openPglite } from '../src/store/index.ts';
import {
  CREDENTIALS_KEY_SETTING,
  createCredentialBox,
  loadCredentialBox,
} from '../src/upstream/credential-box.ts';
import { serverEnv, signedInApi, startServer } from './support/server-process.ts';
import { startSocks5Upstream } from './support/upstream-proxies.ts';

const run = promisify(execFile);
const PASSWORD = 'Distinctive-Upstream-Password-7f3a';
const USERNAME = 'distinctive-supplier-user';
/** Stored in clear on purpose: proves the scan of the data directory can see text. */
const NODE_NAME = 'Distinctive-Node-Name-91c2';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name));
}

test('sealed credentials open only with their key and on their own row', () => {
  const box = createCredentialBox(Buffer.alloc(32, 7));
  const sealed = box.seal('{"username":"u","password":"p"}', 'node1');
  assert.match(sealed, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.ok(!sealed.includes('"p"'));
  assert.equal(box.open(sealed, 'node1'), '{"username":"u","password":"p"}');
  assert.notEqual(box.seal('same', 'node1'), box.seal('same', 'node1'), 'a fresh IV each time');
  assert.throws(() => box.open(sealed, 'node2'), 'moved to another node');
  assert.throws(() => createCredentialBox(Buffer.alloc(32, 8)).open(sealed, 'node1'), 'other key');
  const [v, iv, tag, data = ''] = sealed.split('.');
  const flipped = `${data[0] === 'A' ? 'B' : 'A'}${data.slice(1)}`;
  assert.throws(() => box.open([v, iv, tag, flipped].join('.'), 'node1'), 'altered');
});

test('an upstream node registered before a restart carries traffic after it; its password is nowhere on disk', async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-upstream-'));
  const upstream = await startSocks5Upstream(
    { username: USERNAME, password: PASSWORD },
    '127.0.0.16',
  );
  const target = createServer((req, res) => res.end(`${req.socket.remoteAddress}`));
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  const targetUrl = `http://127.0.0.1:${(target.address() as { port: number }).port}/`;
  const env = serverEnv({
    DATA_DIR: dataDir,
    UPSTREAM_ALLOW_TARGETS: '127.0.0.1/32',
    UPSTREAM_ALLOW_PROXIES: '127.0.0.1/32',
  });
  try {
    let server = await startServer(env, [], 60_000);
    let proxy = '';
    try {
      const api = await signedInApi(server.ports.api, 'supplier@example.com');
      const post = (pathname: string, body: unknown) =>
        api(pathname, { method: 'POST', body: JSON.stringify(body) });
      const key = (await (await post('/v1/keys', {})).json()) as { id: string; secret: string };
      const node = await post('/v1/nodes', {
        name: NODE_NAME,
        upstream: {
          url: `socks5://${USERNAME}:${PASSWORD}@127.0.0.1:${upstream.port}`,
          exit_ips: ['127.0.0.16'],
          country: 'nl',
        },
      });
      assert.equal(node.status, 201);
      const ports = server.ports as unknown as { proxy: number };
      proxy = `http://${key.id}-country-nl:${key.secret}@127.0.0.1:${ports.proxy}`;
      const { stdout } = await run('curl', ['-sS', '--max-time', '15', '-x', proxy, targetUrl]);
      assert.equal(stdout, '127.0.0.16');
    } finally {
      assert.equal(await server.stop(), 0);
    }

    // At rest: the row holds sealed text, the key is a setting, no file holds the password.
    const db = await openPglite(dataDir);
    try {
      const [row] = await db.query<{ credentials: string; host: string }>(
        'SELECT credentials, host FROM upstream_proxies',
      );
      assert.match(row?.credentials ?? '', /^v1\./);
      assert.ok(!row?.credentials.includes(PASSWORD));
      const [setting] = await db.query('SELECT name FROM settings WHERE name = $1', [
        CREDENTIALS_KEY_SETTING,
      ]);
      assert.ok(setting, 'the key is kept in settings');
      const [nodeRow] = await db.query<{ token_hash: string | null }>(
        'SELECT token_hash FROM nodes',
      );
      assert.equal(nodeRow?.token_hash, null, 'an upstream node has no agent token');
      const opened = (await loadCredentialBox(db)).open(
        row?.credentials ?? '',
        (await db.query<{ node_id: string }>('SELECT node_id FROM upstream_proxies'))[0]?.node_id ??
          '',
      );
      assert.deepEqual(JSON.parse(opened), { username: USERNAME, password: PASSWORD });
    } finally {
      await db.close();
    }
    let clearTextSeen = false;
    for (const file of await filesUnder(dataDir)) {
      const bytes = await readFile(file);
      assert.equal(bytes.indexOf(PASSWORD), -1, `${file} holds the password`);
      assert.equal(bytes.indexOf(USERNAME), -1, `${file} holds the user name`);
      clearTextSeen ||= bytes.includes(NODE_NAME);
    }
    assert.ok(clearTextSeen, 'the scan finds a column stored in clear (the node name)');

    // Loaded at start-up: the same key carries traffic through it without registering again.
    server = await startServer(env, [], 60_000);
    try {
      const ports = server.ports as unknown as { proxy: number };
      const again = proxy.replace(/@127\.0\.0\.1:\d+$/, `@127.0.0.1:${ports.proxy}`);
      const { stdout } = await run('curl', ['-sS', '--max-time', '15', '-x', again, targetUrl]);
      assert.equal(stdout, '127.0.0.16');
    } finally {
      assert.equal(await server.stop(), 0);
    }
  } finally {
    await upstream.close();
    await new Promise((resolve) => target.close(resolve));
    await rm(dataDir, { recursive: true, force: true });
  }
});
