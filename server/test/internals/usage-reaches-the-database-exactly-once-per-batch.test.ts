/**
 * The usage flusher on every database engine and every hot-state engine: metered bytes
 * land in usage_hourly per key, node and hour and are debited from the account's balance,
 * once, whatever fails between sealing a batch, committing it and acknowledging it. The
 * price here is one micro-unit per byte, so a debit reads as the bytes it is for.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type Accounts, createAccounts } from '../../src/accounts/index.ts';
import { startUsageFlusher, USAGE_GROUP, usageField } from '../../src/metering/index.ts';
import { type CounterStore, type Database, type HotState, migrate } from '../../src/store/index.ts';
import { databaseEngines, hotStateEngines, type Opened } from '../support/engines.ts';

const TRIAL = 10_000_000;
const CURRENCY = 'usd';
/** One micro-unit per byte for the customer, a tenth of that for the operator. */
const PER_BYTE = 1_000_000_000;
const HOUR = 490_000; // epoch hours: some time in 2025

interface UsageRow {
  key_id: string;
  node_id: string;
  country: string;
  hour: Date;
  bytes_up: number;
  bytes_down: number;
  requests: number;
}

for (const dbEngine of databaseEngines) {
  for (const hotEngine of hotStateEngines) {
    describe(`usage flush on ${dbEngine.name} from ${hotEngine.name}`, {
      skip: dbEngine.skip || hotEngine.skip,
    }, () => {
      let db: Opened<Database>;
      let hot: Opened<HotState>;
      let accounts: Accounts;
      before(async () => {
        db = await dbEngine.open();
        hot = await hotEngine.open();
        await migrate(db.value);
        accounts = createAccounts(db.value, {
          pepper: randomBytes(32),
          trialCredit: { currency: CURRENCY, micro: TRIAL },
        });
        await db.value.query(
          `INSERT INTO prices (currency, exit_type, customer_micro_per_gb, operator_micro_per_gb,
                               effective_from)
           VALUES ($1, 'residential', $2, $3, '1970-01-01Z')`,
          [CURRENCY, PER_BYTE, PER_BYTE / 10],
        );
      });
      after(async () => {
        await hot?.dispose();
        await db?.dispose();
      });

      const newKey = async () => {
        const { account } = await accounts.signup(
          `u-${randomBytes(6).toString('hex')}@example.com`,
          'a long enough password',
        );
        const key = await accounts.issueKey(account.id, { name: 'flush' });
        return { accountId: account.id, keyId: key.id };
      };
      const add = (
        keyId: string,
        nodeId: string,
        hour: number,
        up: number,
        down: number,
        country = 'de',
      ) => {
        const owner = { keyId, nodeId, country };
        return hot.value.counters.add(USAGE_GROUP, {
          [usageField(owner, hour, 'up')]: up,
          [usageField(owner, hour, 'down')]: down,
          [usageField(owner, hour, 'requests')]: 1,
        });
      };
      const usageOf = (keyId: string) =>
        db.value.query<UsageRow>(
          'SELECT * FROM usage_hourly WHERE key_id = $1 ORDER BY hour, node_id, country',
          [keyId],
        );
      const balanceOf = async (accountId: string) =>
        (await accounts.getAccount(accountId))?.balanceMicro;
      /** The account's journal entries as what each added to its balance. */
      const ledgerOf = (accountId: string) =>
        db.value.query<{ kind: string; micro: number }>(
          `SELECT e.kind, -p.amount_micro AS micro FROM journal_entries e
           JOIN journal_postings p ON p.entry_id = e.id AND p.book = 'customer:' || e.account_id
           WHERE e.account_id = $1 ORDER BY e.id`,
          [accountId],
        );
      const flusherWith = (counters: CounterStore, database: Database = db.value) =>
        startUsageFlusher({
          counters,
          allowances: hot.value.allowances,
          database,
          currency: CURRENCY,
          intervalMs: 60_000,
        });

      test('counts land per key, node, country and hour and are debited once', async () => {
        const { accountId, keyId } = await newKey();
        await add(keyId, 'node-a', HOUR, 100, 1000);
        await add(keyId, 'node-a', HOUR, 5, 50);
        await add(keyId, 'node-b', HOUR, 7, 70, 'us');
        await add(keyId, 'node-b', HOUR, 2, 20, '');
        await add(keyId, 'node-a', HOUR + 1, 1, 10);
        const flusher = flusherWith(hot.value.counters);
        const result = await flusher.flush();
        assert.equal(result.batches, 1);
        const rows = await usageOf(keyId);
        assert.deepEqual(
          rows.map((row) => [
            row.node_id,
            row.country,
            row.hour.getTime(),
            row.bytes_up,
            row.bytes_down,
            row.requests,
          ]),
          [
            ['node-a', 'de', HOUR * 3_600_000, 105, 1050, 2],
            ['node-b', '', HOUR * 3_600_000, 2, 20, 1],
            ['node-b', 'us', HOUR * 3_600_000, 7, 70, 1],
            ['node-a', 'de', (HOUR + 1) * 3_600_000, 1, 10, 1],
          ],
        );
        const used = 105 + 1050 + 7 + 70 + 2 + 20 + 1 + 10;
        assert.equal(await balanceOf(accountId), TRIAL - used);
        assert.deepEqual(await ledgerOf(accountId), [
          { kind: 'trial', micro: TRIAL },
          { kind: 'usage', micro: -used },
        ]);
        // Later counts for the same key, node and hour add to the same row.
        await add(keyId, 'node-a', HOUR, 1, 1);
        await flusher.close();
        assert.equal((await usageOf(keyId))[0]?.bytes_up, 106);
        assert.equal(await balanceOf(accountId), TRIAL - used - 2);
        assert.deepEqual(await hot.value.counters.pending(USAGE_GROUP), []);
        assert.deepEqual(await hot.value.counters.read(USAGE_GROUP), {});
      });

      test('a crash after the commit but before the acknowledgement writes nothing twice', async () => {
        const { accountId, keyId } = await newKey();
        await add(keyId, 'node-a', HOUR, 300, 3000);
        let crash = true;
        const crashingAck: CounterStore = {
          ...hot.value.counters,
          add: (...args) => hot.value.counters.add(...args),
          read: (...args) => hot.value.counters.read(...args),
          seal: (...args) => hot.value.counters.seal(...args),
          pending: (...args) => hot.value.counters.pending(...args),
          async ack(group, batchId) {
            if (crash) {
              crash = false;
              throw new Error('the process died before acknowledging');
            }
            await hot.value.counters.ack(group, batchId);
          },
        };
        const flusher = flusherWith(crashingAck);
        await assert.rejects(flusher.flush(), /died before acknowledging/);
        assert.equal((await hot.value.counters.pending(USAGE_GROUP)).length, 1);
        const again = await flusher.flush();
        assert.deepEqual(again, { batches: 0, replayed: 1 });
        assert.equal((await usageOf(keyId))[0]?.bytes_down, 3000);
        assert.equal(await balanceOf(accountId), TRIAL - 3300);
        assert.deepEqual(await hot.value.counters.pending(USAGE_GROUP), []);
        await flusher.close();
      });

      test('a crash before the commit loses nothing: the batch is applied on the next flush', async () => {
        const { accountId, keyId } = await newKey();
        await add(keyId, 'node-a', HOUR, 400, 4000);
        let fail = true;
        const failingDb: Database = {
          ...db.value,
          query: (...args) => db.value.query(...args),
          exec: (...args) => db.value.exec(...args),
          transaction: (fn) =>
            db.value.transaction(async (tx) => {
              const result = await fn(tx);
              if (fail) {
                fail = false;
                throw new Error('the database went away before COMMIT');
              }
              return result;
            }),
        };
        const flusher = flusherWith(hot.value.counters, failingDb);
        await assert.rejects(flusher.flush(), /before COMMIT/);
        assert.deepEqual(await usageOf(keyId), [], 'the rolled-back batch left no row');
        assert.equal(await balanceOf(accountId), TRIAL);
        // Counted meanwhile: a new batch, applied after the pending one.
        await add(keyId, 'node-a', HOUR, 1, 1);
        const result = await flusher.flush();
        assert.deepEqual(result, { batches: 2, replayed: 0 });
        assert.equal((await usageOf(keyId))[0]?.bytes_up, 401);
        assert.equal(await balanceOf(accountId), TRIAL - 4402);
        await flusher.close();
      });

      test('flushes asked for at once run one after the other and count each byte once', async () => {
        const { accountId, keyId } = await newKey();
        const flusher = flusherWith(hot.value.counters);
        const flushes: Promise<unknown>[] = [];
        for (let i = 0; i < 20; i++) {
          await add(keyId, `node-${i % 3}`, HOUR, 10, 100);
          flushes.push(flusher.flush());
        }
        await Promise.all(flushes);
        const rows = await usageOf(keyId);
        assert.equal(
          rows.reduce((sum, row) => sum + row.bytes_up + row.bytes_down, 0),
          20 * 110,
        );
        assert.equal(await balanceOf(accountId), TRIAL - 20 * 110);
        await flusher.close();
      });

      test('bytes of a key that does not exist are reported, the rest of the batch lands', async () => {
        const { keyId } = await newKey();
        await add(keyId, 'node-a', HOUR, 9, 90);
        await add('no-such-key', 'node-a', HOUR, 1, 1);
        const orphans: string[][] = [];
        const flusher = startUsageFlusher({
          counters: hot.value.counters,
          allowances: hot.value.allowances,
          database: db.value,
          currency: CURRENCY,
          intervalMs: 60_000,
          onOrphans: (_batch, keyIds) => orphans.push(keyIds),
        });
        await flusher.close();
        assert.deepEqual(orphans, [['no-such-key']]);
        assert.equal((await usageOf(keyId))[0]?.bytes_down, 90);
      });
    });
  }
}
