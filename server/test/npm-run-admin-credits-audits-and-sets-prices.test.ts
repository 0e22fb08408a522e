/**
 * `npm run admin -- …` as an operator runs it, against the database the configuration
 * names (embedded, and PostgreSQL when DATABASE_URL is set): credits with a reason land
 * in the journal once per reference, the audit is clean until a balance is changed
 * behind the journal's back, and prices are set from a whole hour on, never backwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createAccounts, loadOrCreatePepper } from '../src/accounts/index.ts';
import { openDatabase } from '../src/store/index.ts';
import { quietLogger, serverStores } from './support/engines.ts';
import { SERVER_DIR } from './support/server-process.ts';

const run = promisify(execFile);

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

const modes = serverStores;

for (const mode of modes) {
  describe(`npm run admin on ${mode.name}`, { skip: mode.skip }, () => {
    let env: Record<string, string>;
    let dispose: () => Promise<void>;
    let accountId: string;
    const email = 'customer@example.com';

    /** The command as `npm run admin -- …` runs it, with nothing inherited but PATH. */
    const admin = async (...args: string[]): Promise<Outcome> => {
      try {
        const { stdout, stderr } = await run(
          process.execPath,
          ['--import', 'tsx', 'src/admin/main.ts', ...args],
          { cwd: SERVER_DIR, env: { PATH: process.env.PATH, ...env } },
        );
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code: number; stdout: string; stderr: string };
        return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };

    /** Opens the same database in-process, for what only a test does (the CLI is not running). */
    const withDatabase = async <T>(
      fn: (db: Awaited<ReturnType<typeof openDatabase>>['database']) => Promise<T>,
    ): Promise<T> => {
      const { database, close } = await openDatabase(
        { databaseUrl: env.DATABASE_URL, redisUrl: undefined, dataDir: env.DATA_DIR ?? '' },
        quietLogger,
      );
      try {
        return await fn(database);
      } finally {
        await close();
      }
    };

    before(async () => {
      ({ env, dispose } = await mode.setUp());
      // The first command migrates the new database.
      assert.equal((await admin('audit')).code, 0);
      accountId = await withDatabase(async (db) => {
        const accounts = createAccounts(db, {
          pepper: await loadOrCreatePepper(db),
          trialCredit: { currency: 'usd', micro: 0 },
        });
        return (await accounts.signup(email, 'a long enough password')).account.id;
      });
    });
    after(() => dispose?.());

    test('a credit by email needs a reason, lands once per reference, and a debit takes back', async () => {
      const refused = await admin('credit', email, '5.25');
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /--reason is required/);

      const credited = await admin(
        'credit',
        email,
        '5.25',
        '--reason',
        'goodwill',
        '--reference',
        't-1',
      );
      assert.equal(credited.code, 0, credited.stderr);
      assert.equal(credited.stdout, `${accountId}: credited 5.25 usd; balance 5.25\n`);
      const again = await admin(
        'credit',
        email,
        '5.25',
        '--reason',
        'goodwill',
        '--reference',
        't-1',
      );
      assert.equal(again.code, 0);
      assert.match(again.stdout, /t-1 was applied before: nothing done/);

      const debited = await admin('debit', accountId, '1.000001', '--reason', 'correction');
      assert.equal(debited.stdout, `${accountId}: debited 1.000001 usd; balance 4.249999\n`);
      assert.equal(
        (await admin('balance', email)).stdout,
        `${accountId}: balance 4.249999 usd, owed for nodes 0.00\n`,
      );
      const memos = await withDatabase((db) =>
        db.query<{ kind: string; memo: string }>(
          'SELECT kind, memo FROM journal_entries WHERE account_id = $1 ORDER BY id',
          [accountId],
        ),
      );
      assert.deepEqual(memos, [
        { kind: 'adjustment', memo: 'goodwill' },
        { kind: 'adjustment', memo: 'correction' },
      ]);
    });

    test('bad input is refused with the usage, an unknown account alone', async () => {
      for (const args of [
        ['credit', email, 'lots', '--reason', 'x'],
        ['credit', email, '0', '--reason', 'x'],
        ['debit', email, '--', '-1', '--reason', 'x'],
        ['credit', email, '1e3', '--reason', 'x'],
        ['prices', 'set', 'teleport', '1', '0.1'],
        ['prices', 'set', 'residential', '-1', '0.1'],
        ['prices', 'set', 'residential', '1', '0.1', '--country', 'xx'],
        ['refund-everyone'],
        [],
      ]) {
        const outcome = await admin(...args);
        assert.equal(outcome.code, 2, args.join(' '));
        assert.match(outcome.stderr, /usage: npm run admin/);
      }
      const unknown = await admin('credit', 'nobody@example.com', '1', '--reason', 'x');
      assert.equal(unknown.code, 1);
      assert.equal(
        unknown.stderr,
        'ipcola admin: no account with the id or user email nobody@example.com\n',
      );
    });

    test('the audit is clean, then finds a balance changed behind the journal', async () => {
      const clean = await admin('audit');
      assert.equal(clean.code, 0);
      assert.match(clean.stdout, /^audit: clean \(\d+ journal entries, 1 accounts\)\n$/);
      await withDatabase((db) =>
        db.query('UPDATE accounts SET balance_micro = balance_micro + 1 WHERE id = $1', [
          accountId,
        ]),
      );
      const drift = await admin('audit');
      assert.equal(drift.code, 1);
      assert.match(
        drift.stdout,
        new RegExp(`drift: balance ${accountId}: expected 4249999, found 4250000`),
      );
      await withDatabase((db) =>
        db.query('UPDATE accounts SET balance_micro = balance_micro - 1 WHERE id = $1', [
          accountId,
        ]),
      );
      assert.equal((await admin('audit')).code, 0);
    });

    test('a price is set from the next whole hour, never for hours already used', async () => {
      const listed = await admin('prices');
      assert.match(
        listed.stdout,
        /^residential \*\s+customer 4\.00\/GB\s+operator 0\.40\/GB\s+usd/m,
      );

      const next = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000).toISOString();
      const set = await admin('prices', 'set', 'residential', '5', '0.55', '--country', 'DE');
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, `residential de: customer 5.00/GB, operator 0.55/GB from ${next}\n`);

      const backwards = await admin(
        'prices',
        'set',
        'residential',
        '1',
        '0.1',
        '--from',
        '2020-01-01T00:00:00Z',
      );
      assert.equal(backwards.code, 1);
      assert.match(
        backwards.stderr,
        /effective_from must be a whole hour from .* hours already used keep their price/,
      );
      const rows = await withDatabase((db) =>
        db.query<{ country: string; customer_micro_per_gb: number }>(
          `SELECT country, customer_micro_per_gb FROM prices WHERE exit_type = 'residential'
           ORDER BY effective_from`,
        ),
      );
      assert.deepEqual(rows, [
        { country: '', customer_micro_per_gb: 4_000_000 },
        { country: 'de', customer_micro_per_gb: 5_000_000 },
      ]);
    });
  });
}
