/**
 * Servers flushing usage at once check the same accounts at once: each balance alert is
 * owed once per crossing and the saved card is charged once per crossing, whichever
 * server wins, and a top-up that lifts the balance back arms both for the next crossing.
 * Eight watchers (one per would-be server) run together on each database engine; the
 * charges go to the Stripe stand-in through the real `stripe` library.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { balanceWatcher, books, postEntry, transfer } from '../../src/billing/index.ts';
import { autoTopUpCharger } from '../../src/payments/auto-topup.ts';
import { createStripeClient } from '../../src/payments/index.ts';
import { type Database, migrate } from '../../src/store/index.ts';
import type { Webhooks } from '../../src/webhooks/index.ts';
import { databaseEngines, type Opened, quietLogger } from '../support/engines.ts';
import { type StripeStandIn, startStripeStandIn } from '../support/stripe-stand-in.ts';

const SERVERS = 8;
const ACCOUNT = 'acctcrossing';

for (const engine of databaseEngines) {
  describe(`balance alerts and auto top-ups on ${engine.name}`, { skip: engine.skip }, () => {
    let opened: Opened<Database>;
    let db: Database;
    let stripe: StripeStandIn;
    const emitted: string[] = [];
    const webhooks: Pick<Webhooks, 'emit'> = {
      async emit(accountId, type, data) {
        emitted.push(type);
        return { id: 'evt', type, created: 0, account_id: accountId, data };
      },
    };
    let entries = 0;
    /** Moves the balance by `micro` as the journal does (a usage debit or a credit). */
    const move = (micro: number) => {
      entries += 1;
      const reference = `crossing-${entries}`;
      return db.transaction((tx) =>
        postEntry(tx, {
          kind: micro < 0 ? 'usage' : 'adjustment',
          reference,
          currency: 'usd',
          accountId: ACCOUNT,
          postings:
            micro < 0
              ? transfer(books.customer(ACCOUNT), books.revenue, -micro)
              : transfer(books.promotions, books.customer(ACCOUNT), micro),
        }),
      );
    };
    const balance = async () =>
      (
        await db.query<{ balance_micro: number }>(
          'SELECT balance_micro FROM accounts WHERE id = $1',
          [ACCOUNT],
        )
      )[0]?.balance_micro;
    const charges = () =>
      stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents');
    /** Every server checks the account after its batch, all at once. */
    const everyServerChecks = async () => {
      const client = createStripeClient({ secretKey: 'sk_test_standin', apiUrl: stripe.url });
      await Promise.all(
        Array.from({ length: SERVERS }, () =>
          balanceWatcher({
            database: db,
            webhooks,
            autoTopUp: autoTopUpCharger({
              stripe: client,
              database: db,
              webhooks,
              logger: quietLogger,
            }),
          })([ACCOUNT]),
        ),
      );
    };
    const count = (type: string) => emitted.filter((seen) => seen === type).length;

    before(async () => {
      opened = await engine.open();
      db = opened.value;
      await migrate(db);
      stripe = await startStripeStandIn();
      await db.query(
        `INSERT INTO accounts (id, auto_topup_enabled, auto_topup_threshold_micro,
           auto_topup_amount_micro, stripe_customer_id, payment_method_id)
         VALUES ($1, true, 500000, 25000000, 'cus_test_crossing', 'pm_test_crossing')`,
        [ACCOUNT],
      );
      await move(2_000_000);
    });
    after(async () => {
      await stripe?.close();
      await opened?.dispose();
    });

    test('a crossing checked by every server at once alerts once and charges once', async () => {
      // 2.00 → 0.40: under the alert level (1.00) and the threshold (0.50).
      await move(-1_600_000);
      await everyServerChecks();
      assert.equal(count('balance.low'), 1);
      assert.equal(count('balance.exhausted'), 0);
      assert.equal(charges().length, 1);
      assert.equal(charges()[0]?.idempotencyKey, `autotopup-${ACCOUNT}-1`);
      assert.equal(count('topup.succeeded'), 1);
      assert.equal(await balance(), 25_400_000);
      // Above both again, nothing is owed however often it is checked.
      await everyServerChecks();
      assert.equal(count('balance.low'), 1);
      assert.equal(charges().length, 1);
    });

    test('the top-up arms both for the next crossing, and zero is exhausted once', async () => {
      await move(-25_400_000);
      await everyServerChecks();
      await everyServerChecks();
      assert.equal(count('balance.low'), 2);
      assert.equal(count('balance.exhausted'), 1);
      assert.equal(charges().length, 2);
      assert.equal(charges()[1]?.idempotencyKey, `autotopup-${ACCOUNT}-2`);
      assert.equal(await balance(), 25_000_000);
    });
  });
}
