/**
 * The upstream-node registry on every database engine (PGlite always, PostgreSQL when
 * DATABASE_URL is set): what is registered is listed back whole, credentials are
 * stored sealed, and a row sealed under another key is skipped, not fatal.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import { type Database, migrate } from '../../src/store/index.ts';
import {
  CREDENTIALS_KEY_SETTING,
  createUpstreamRegistry,
  loadCredentialBox,
  type UpstreamRegistry,
} from '../../src/upstream/index.ts';
import { databaseEngines, type Opened } from '../support/engines.ts';

for (const engine of databaseEngines) {
  describe(`upstream nodes on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<Database>;
    let db: Database;
    let registry: UpstreamRegistry;
    const unreadable: string[] = [];

    before(async () => {
      opened = await engine.open();
      db = opened.value;
      await migrate(db);
      await db.query("INSERT INTO accounts (id) VALUES ('supplier')");
      registry = createUpstreamRegistry(db, await loadCredentialBox(db), {
        proxyPolicy: createExitPolicy(),
        onUnreadable: (nodeId) => unreadable.push(nodeId),
      });
    });
    after(() => opened.dispose());

    test('a registered node is listed back whole, its credentials sealed in the row', async () => {
      const node = await registry.register('supplier', {
        name: 'pool',
        type: 'datacenter',
        upstream: {
          url: 'http://pool%20user:p%40ss@8.8.8.8:3128/',
          exit_ips: ['2001:db8::1', '198.51.100.3', '198.51.100.4'],
          country: 'us',
          region: 'new_york',
          city: 'new_york',
          asn: 64500,
        },
      });
      assert.deepEqual(node.proxy, {
        protocol: 'http',
        host: '8.8.8.8',
        port: 3128,
        credentials: { username: 'pool user', password: 'p@ss' },
      });
      const listed = await registry.list();
      assert.deepEqual(listed, [
        {
          id: node.id,
          type: 'datacenter',
          proxy: node.proxy,
          exitIps: ['198.51.100.3', '198.51.100.4', '2001:db8::1'],
          location: { country: 'us', region: 'new_york', city: 'new_york', asn: 64500 },
        },
      ]);
      const [row] = await db.query<{ credentials: string }>(
        'SELECT credentials FROM upstream_proxies WHERE node_id = $1',
        [node.id],
      );
      assert.match(row?.credentials ?? '', /^v1\./);
      assert.ok(!row?.credentials.includes('p@ss'));
      const [tokenless] = await db.query<{ token_hash: string | null }>(
        'SELECT token_hash FROM nodes WHERE id = $1',
        [node.id],
      );
      assert.equal(tokenless?.token_hash, null);
    });

    test('a row whose credentials do not open under this key is skipped and reported', async () => {
      const before = (await registry.list()).length;
      const stranger = await registry.register('supplier', {
        name: '',
        type: 'datacenter',
        upstream: { url: 'socks5://u:p@8.8.4.4:1080', exit_ips: ['198.51.100.9'], country: 'de' },
      });
      // Another key, as if the settings row had been replaced.
      await db.query('UPDATE settings SET value = $1 WHERE name = $2', [
        Buffer.alloc(32, 1).toString('base64url'),
        CREDENTIALS_KEY_SETTING,
      ]);
      const rekeyed = createUpstreamRegistry(db, await loadCredentialBox(db), {
        proxyPolicy: createExitPolicy(),
        onUnreadable: (nodeId) => unreadable.push(nodeId),
      });
      const listed = await rekeyed.list();
      assert.equal(listed.length, 0, 'every sealed row is unreadable now');
      assert.ok(unreadable.includes(stranger.id));
      assert.equal(before, 1);
    });
  });
}
