/**
 * The ledger an auditor can recompute: 1,000 random journal operations run concurrently
 * (credits, debits, usage, earnings, payouts, and replays of causes already applied) on
 * each database engine, and the audit finds no drift; the sums are what the operations
 * that were applied add up to. A balance or a usage row changed behind the journal's
 * back is found.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { auditLedger, books, type Entry, postEntry, transfer } from '../../src/billing/index.ts';
import { type Database, migrate } from '../../src/store/index.ts';
import { databaseEngines, type Opened } from '../support/engines.ts';

const OPERATIONS = 1_000;
/** One micro-unit per byte: a usage row's charge or earning is its bytes. */
const PER_BYTE = 1_000_000_000;
const keyOf = (accountId: string) => `k${accountId.slice(-4)}`;
const nodeOf = (accountId: string) => `n${accountId.slice(-4)}`;
const ACCOUNTS = 12;

/** A seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

for (const engine of databaseEngines) {
  describe(`the journal on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<Database>;
    let db: Database;
    const ids = Array.from(
      { length: ACCOUNTS },
      (_, i) => `acct_audit${String(i).padStart(4, '0')}`,
    );
    before(async () => {
      opened = await engine.open();
      db = opened.value;
      await migrate(db);
      for (const id of ids) {
        await db.query('INSERT INTO accounts (id) VALUES ($1)', [id]);
        await db.query(`INSERT INTO api_keys (id, account_id, secret_hash) VALUES ($1, $2, 'x')`, [
          keyOf(id),
          id,
        ]);
        await db.query('INSERT INTO nodes (id, account_id) VALUES ($1, $2)', [nodeOf(id), id]);
      }
    });
    after(() => opened.dispose());

    test('1,000 concurrent random operations leave no drift, and replayed causes count once', async () => {
      const next = random(20261205);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
      const entries: Entry[] = [];
      for (let i = 0; i < OPERATIONS; i++) {
        const accountId = pick(ids);
        const amount = 1 + Math.floor(next() * 5_000_000);
        // One in five reuses an earlier cause: a webhook or a flush delivered twice.
        const replay = entries.length > 0 && next() < 0.2;
        if (replay) {
          entries.push(pick(entries));
          continue;
        }
        const kind = pick(['topup', 'usage', 'adjustment', 'earning', 'payout', 'trial'] as const);
        const postings =
          kind === 'topup'
            ? transfer(books.stripe, books.customer(accountId), amount)
            : kind === 'usage'
              ? transfer(books.customer(accountId), books.revenue, amount)
              : kind === 'adjustment'
                ? transfer(
                    books.promotions,
                    books.customer(accountId),
                    next() < 0.5 ? amount : -amount,
                  )
                : kind === 'earning'
                  ? transfer(books.operatorCost, books.operator(accountId), amount)
                  : kind === 'payout'
                    ? transfer(books.operator(accountId), books.stripe, amount)
                    : transfer(books.promotions, books.customer(accountId), amount);
        entries.push({ kind, reference: `op-${i}`, currency: 'usd', accountId, postings });
      }

      // Usage and earnings come from usage rows, as the flusher writes them: the row and
      // its entry in one transaction (a replayed entry writes no row).
      const apply = (entry: Entry, i: number) =>
        db.transaction(async (tx) => {
          const posted = await postEntry(tx, entry);
          if (posted && entry.kind === 'payout') {
            // A payout entry belongs to a payout, paid here, as the payouts module writes it.
            await tx.query(
              `INSERT INTO payouts (id, account_id, amount_micro, currency, status)
               VALUES ($1, $2, $3, 'usd', 'paid')`,
              [entry.reference, entry.accountId, entry.postings[0]?.amountMicro],
            );
          }
          if (!posted || (entry.kind !== 'usage' && entry.kind !== 'earning')) return posted;
          const bytes = Math.abs(entry.postings[0]?.amountMicro ?? 0);
          const usage = entry.kind === 'usage';
          // A usage row of the customer's key on some node with no operator rate, or of
          // some key on the operator's node with no customer price.
          await tx.query(
            `INSERT INTO usage_hourly (key_id, node_id, country, hour, bytes_down,
               customer_micro_per_gb, operator_micro_per_gb, charged_micro, earned_micro)
             VALUES ($1, $2, '', $8, $3, $4, $5, $6, $7)`,
            [
              usage ? keyOf(entry.accountId) : keyOf(ids[0] as string),
              usage ? `elsewhere-${i}` : `${nodeOf(entry.accountId)}`,
              bytes,
              usage ? PER_BYTE : 0,
              usage ? 0 : PER_BYTE,
              usage ? bytes : 0,
              usage ? 0 : bytes,
              new Date(Date.UTC(2026, 0, 1) + i * 3_600_000),
            ],
          );
          return posted;
        });
      const applied = await Promise.all(entries.map((entry, i) => apply(entry, i)));
      const distinct = new Set(entries.map((entry) => `${entry.kind}:${entry.reference}`));
      assert.equal(applied.filter(Boolean).length, distinct.size, 'each cause applied once');

      assert.deepEqual(await auditLedger(db), []);

      // What the applied operations add up to, per account.
      const expected = new Map<string, { balance: number; payable: number }>();
      const seen = new Set<string>();
      for (const entry of entries) {
        const key = `${entry.kind}:${entry.reference}`;
        if (seen.has(key)) continue;
        seen.add(key);
        for (const posting of entry.postings) {
          const [kind, id] = posting.book.split(':');
          if (!id) continue;
          const sums = expected.get(id) ?? { balance: 0, payable: 0 };
          if (kind === 'customer') sums.balance -= posting.amountMicro;
          if (kind === 'operator') sums.payable -= posting.amountMicro;
          expected.set(id, sums);
        }
      }
      const rows = await db.query<{ id: string; balance_micro: number; payable_micro: number }>(
        'SELECT id, balance_micro, payable_micro FROM accounts ORDER BY id',
      );
      for (const row of rows) {
        const sums = expected.get(row.id) ?? { balance: 0, payable: 0 };
        assert.equal(row.balance_micro, sums.balance, `${row.id} balance`);
        assert.equal(row.payable_micro, sums.payable, `${row.id} payable`);
      }
      const [books_] = await db.query<{ sum: number }>(
        'SELECT coalesce(sum(amount_micro), 0)::int8 AS sum FROM journal_postings',
      );
      assert.equal(books_?.sum, 0, 'the books as a whole balance');
    });

    test('an entry that does not balance is refused before it reaches the database', async () => {
      await assert.rejects(
        db.transaction((tx) =>
          postEntry(tx, {
            kind: 'adjustment',
            reference: 'lopsided',
            currency: 'usd',
            accountId: ids[0] as string,
            postings: [{ book: books.customer(ids[0] as string), amountMicro: -5 }],
          }),
        ),
        RangeError,
      );
      assert.equal(
        (await db.query(`SELECT 1 FROM journal_entries WHERE reference = 'lopsided'`)).length,
        0,
      );
    });

    test('a cached balance or a usage row changed behind the journal is reported', async () => {
      const [victim] = ids;
      await db.query('UPDATE accounts SET balance_micro = balance_micro + 7 WHERE id = $1', [
        victim,
      ]);
      await db.query(
        `INSERT INTO api_keys (id, account_id, secret_hash) VALUES ('kaudit', $1, 'x')`,
        [victim],
      );
      await db.query(
        `INSERT INTO usage_hourly (key_id, node_id, country, hour, bytes_up, bytes_down,
                                   customer_micro_per_gb, charged_micro)
         VALUES ('kaudit', 'n1', '', '2026-01-01T00:00Z', 1000000000, 0, 4000000, 3999999)`,
      );
      const drifts = await auditLedger(db);
      const found = (check: string) => drifts.find((drift) => drift.check === check);
      assert.deepEqual(
        { ...found('balance') },
        {
          check: 'balance',
          subject: victim,
          expected: (found('balance')?.found ?? 0) - 7,
          found: found('balance')?.found,
        },
      );
      assert.equal(found('usage_row')?.expected, 4_000_000);
      assert.equal(found('usage_row')?.found, 3_999_999);
      // The row's charge was never posted: the account's usage total disagrees too.
      assert.equal(found('usage_total')?.subject, victim);
    });
  });
}
