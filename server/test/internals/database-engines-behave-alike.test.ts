import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type Database, MigrationError, migrate, openPostgres } from '../../src/store/index.ts';
import {
  createScratchDatabase,
  databaseEngines,
  MIGRATION_VERSIONS,
  needs,
  type Opened,
  quietLogger,
  required,
} from '../support/engines.ts';

const TABLES = [
  'accounts',
  'api_keys',
  'auto_topup_failures',
  'exit_ips',
  'idempotency_keys',
  'journal_entries',
  'journal_postings',
  'leases',
  'ledger_bytes_before_money',
  'meter_events_outbox',
  'nodes',
  'passwordless_cidrs',
  'payouts',
  'prices',
  'sessions',
  'settings',
  'stripe_charge_refunds',
  'stripe_disputes',
  'stripe_events',
  'stripe_payments',
  'stripe_refund_failures',
  'upstream_proxies',
  'usage_batches',
  'usage_hourly',
  'users',
  'webhook_attempts',
  'webhook_deliveries',
  'webhook_endpoints',
];

async function migrationsDir(
  files: Record<string, string>,
): Promise<{ url: URL; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-migrations-'));
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return { url: pathToFileURL(`${dir}/`), remove: () => rm(dir, { recursive: true, force: true }) };
}

for (const engine of databaseEngines) {
  describe(`database on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<Database>;
    let db: Database;
    before(async () => {
      opened = await engine.open();
      db = opened.value;
    });
    after(() => opened.dispose());

    test('the first migrate applies the schema; the second applies nothing', async () => {
      assert.deepEqual(await migrate(db), MIGRATION_VERSIONS);
      assert.deepEqual(await migrate(db), []);
      const rows = await db.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name`,
      );
      assert.deepEqual(
        rows.map((row) => row.table_name),
        TABLES,
      );
      const [recorded] = await db.query<{ n: number }>(
        'SELECT count(*)::int8 AS n FROM schema_migrations',
      );
      assert.equal(recorded?.n, MIGRATION_VERSIONS.length);
    });

    test('parameters and column types come back the same on every engine', async () => {
      await db.query('INSERT INTO accounts (id, name, balance_micro) VALUES ($1, $2, $3)', [
        'acc_types',
        'Types Ltd',
        5_000_000_000_000,
      ]);
      await db.query(
        `INSERT INTO api_keys (id, account_id, secret_hash, allowed_countries, client_allowlist)
         VALUES ($1, $2, $3, $4, $5)`,
        ['k1types', 'acc_types', 'hash', ['us', 'de'], ['10.0.0.0/8']],
      );
      const [row] = await db.query<{
        balance_micro: unknown;
        created_at: unknown;
        scopes: unknown;
        allowed_countries: unknown;
        disabled: unknown;
        max_concurrency: unknown;
      }>(
        `SELECT a.balance_micro, a.created_at, k.scopes, k.allowed_countries, k.disabled, k.max_concurrency
         FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE a.id = $1`,
        ['acc_types'],
      );
      assert.ok(row);
      assert.equal(row.balance_micro, 5_000_000_000_000, 'int8 is a JS number');
      assert.ok(row.created_at instanceof Date);
      assert.deepEqual(row.scopes, ['proxy'], 'a text[] column, and the default is proxy only');
      assert.deepEqual(row.allowed_countries, ['us', 'de']);
      assert.equal(row.disabled, false);
      assert.equal(row.max_concurrency, null);
    });

    test('int8 beyond 2^53 is refused rather than rounded', async () => {
      await assert.rejects(db.query('SELECT 9007199254740993::int8 AS big'), RangeError);
    });

    test('a transaction that throws leaves nothing behind', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO accounts (id) VALUES ('acc_rollback')`);
          throw new Error('abort');
        }),
        /abort/,
      );
      const rows = await db.query(`SELECT id FROM accounts WHERE id = 'acc_rollback'`);
      assert.equal(rows.length, 0);
    });

    test('a failing statement inside a transaction rolls back the whole transaction', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO accounts (id) VALUES ('acc_partial')`);
          await tx.query(`INSERT INTO accounts (id) VALUES ('acc_partial')`);
        }),
      );
      assert.equal((await db.query(`SELECT id FROM accounts WHERE id = 'acc_partial'`)).length, 0);
      // and the engine is still usable afterwards
      assert.deepEqual(await db.query('SELECT 1::int8 AS one'), [{ one: 1 }]);
    });

    test('concurrent transactions each see and update a consistent balance', async () => {
      await db.query(`INSERT INTO accounts (id, balance_micro) VALUES ('acc_race', 0)`);
      await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          db.transaction(async (tx) => {
            const [row] = await tx.query<{ balance_micro: number }>(
              `SELECT balance_micro FROM accounts WHERE id = 'acc_race' FOR UPDATE`,
            );
            await tx.query(`UPDATE accounts SET balance_micro = $1 WHERE id = 'acc_race'`, [
              (row?.balance_micro ?? 0) + i + 1,
            ]);
          }),
        ),
      );
      const [row] = await db.query<{ balance_micro: number }>(
        `SELECT balance_micro FROM accounts WHERE id = 'acc_race'`,
      );
      assert.equal(row?.balance_micro, (25 * 26) / 2);
    });

    test('the journal refuses the same cause twice, an entry that does not balance, and edits', async () => {
      await db.query(`INSERT INTO accounts (id) VALUES ('acc_ledger')`);
      const entry = (reference: string, amounts: number[]) =>
        db.transaction(async (tx) => {
          const [created] = await tx.query<{ id: number }>(
            `INSERT INTO journal_entries (kind, reference, currency, account_id)
             VALUES ('topup', $1, 'usd', 'acc_ledger') RETURNING id`,
            [reference],
          );
          for (const [i, amount] of amounts.entries()) {
            await tx.query(
              'INSERT INTO journal_postings (entry_id, book, amount_micro) VALUES ($1, $2, $3)',
              [created?.id, i === 0 ? 'stripe' : 'customer:acc_ledger', amount],
            );
          }
        });
      await entry('evt_1', [1000, -1000]);
      await assert.rejects(entry('evt_1', [1000, -1000]), (error: { code?: string }) => {
        return error.code === '23505';
      });
      await assert.rejects(entry('evt_2', [1000, -999]), (error: { code?: string }) => {
        return error.code === '23514';
      });
      assert.equal(
        (await db.query(`SELECT 1 FROM journal_entries WHERE reference = 'evt_2'`)).length,
        0,
      );
      for (const edit of [
        `UPDATE journal_postings SET amount_micro = 5 WHERE book = 'stripe'`,
        `DELETE FROM journal_postings WHERE book = 'stripe'`,
        `UPDATE journal_entries SET memo = 'changed'`,
        `DELETE FROM journal_entries`,
      ]) {
        await assert.rejects(db.query(edit), (error: { code?: string }) => error.code === '55000');
      }
    });

    test('a migration that fails is rolled back and not recorded', async () => {
      const dir = await migrationsDir({
        '0001_initial.sql': 'SELECT 1;',
        '0002_broken.sql': 'CREATE TABLE half_done (id int); SELECT no_such_column FROM half_done;',
      });
      try {
        const scratch = await engine.open();
        try {
          await assert.rejects(migrate(scratch.value, dir.url), (error) => {
            assert.ok(error instanceof MigrationError);
            assert.equal(error.version, '0002_broken');
            return true;
          });
          const tables = await scratch.value.query(
            `SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'`,
          );
          assert.equal(tables.length, 0, 'the partial table was rolled back');
          const versions = await scratch.value.query<{ version: string }>(
            'SELECT version FROM schema_migrations ORDER BY version',
          );
          assert.deepEqual(
            versions.map((v) => v.version),
            ['0001_initial'],
          );
        } finally {
          await scratch.dispose();
        }
      } finally {
        await dir.remove();
      }
    });

    test('a migration edited after it was applied stops start-up', async () => {
      const first = await migrationsDir({ '0001_initial.sql': 'CREATE TABLE edited (id int);' });
      const second = await migrationsDir({
        '0001_initial.sql': 'CREATE TABLE edited (id bigint);',
      });
      const scratch = await engine.open();
      try {
        assert.deepEqual(await migrate(scratch.value, first.url), ['0001_initial']);
        await assert.rejects(migrate(scratch.value, second.url), (error) => {
          assert.ok(error instanceof MigrationError);
          assert.match(error.message, /changed after it was applied/);
          return true;
        });
      } finally {
        await scratch.dispose();
        await first.remove();
        await second.remove();
      }
    });

    test('the engine reports itself down once closed', async () => {
      const scratch = await engine.open();
      await scratch.value.ping();
      await scratch.value.close();
      await assert.rejects(scratch.value.ping());
      await scratch.dispose();
    });
  });
}

test('three servers migrating one PostgreSQL database at once apply each migration once', {
  skip: needs('DATABASE_URL'),
}, async () => {
  const scratch = await createScratchDatabase(required('DATABASE_URL'));
  const pools = await Promise.all([1, 2, 3].map(() => openPostgres(scratch.url, quietLogger)));
  try {
    const results = await Promise.all(pools.map((pool) => migrate(pool)));
    assert.deepEqual(results.flat().sort(), MIGRATION_VERSIONS);
    const [recorded] =
      (await pools[0]?.query<{ n: number }>('SELECT count(*)::int8 AS n FROM schema_migrations')) ??
      [];
    assert.equal(recorded?.n, MIGRATION_VERSIONS.length);
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
    await scratch.drop();
  }
});
