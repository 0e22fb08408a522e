/**
 * GET /v1/billing and /v1/billing/ledger as a customer sees them: the balance in money
 * and in GB per exit type at the prices in force, the prices, and every journal entry
 * that moved the balance, newest first, in pages. Without Stripe, checkout says so.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type request from 'supertest';
import { books, DEFAULT_PRICES, postEntry, transfer } from '../src/billing/index.ts';
import { type ControlApi, openControlApi, signUp, TRIAL } from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

interface Money {
  currency: string;
  amount_micro: number;
  amount: string;
}

interface LedgerLine {
  id: string;
  kind: string;
  book: string;
  amount: Money;
  memo: string;
  receipt_url: string | null;
  created_at: string;
}

for (const engine of databaseEngines) {
  describe(`billing on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    let agent: ReturnType<typeof request.agent>;
    let csrf: string;
    let accountId: string;

    before(async () => {
      api = await openControlApi(engine);
      ({ agent, csrf, accountId } = await signUp(api.app, 'billing'));
    });
    after(() => api.close());

    /** An admin's adjustment, as `npm run admin -- credit` posts it. */
    const adjust = (reference: string, micro: number, memo: string) =>
      api.db.transaction((tx) =>
        postEntry(tx, {
          kind: 'adjustment',
          reference,
          currency: TRIAL.currency,
          accountId,
          memo,
          postings: transfer(books.promotions, books.customer(accountId), micro),
        }),
      );

    test('a new account shows its trial credit, what it buys at each exit type, and the prices', async () => {
      const billing = (await agent.get('/v1/billing').expect(200)).body;
      assert.deepEqual(billing.balance, {
        currency: 'eur',
        amount_micro: 3_500_000,
        amount: '3.50',
      });
      assert.deepEqual(billing.earnings_owed, { currency: 'eur', amount_micro: 0, amount: '0.00' });
      assert.deepEqual(billing.buys, [
        // 3.50 at 4.00, 0.50 and 8.00 per GB of 10^9 bytes.
        { exit_type: 'residential', bytes: 875_000_000, gb: '0.875' },
        { exit_type: 'datacenter', bytes: 7_000_000_000, gb: '7.000' },
        { exit_type: 'mobile', bytes: 437_500_000, gb: '0.438' },
      ]);
      assert.deepEqual(
        billing.prices.map(
          (price: { exit_type: string; country: string | null; per_gb: Money }) => [
            price.exit_type,
            price.country,
            price.per_gb.amount_micro,
          ],
        ),
        [
          ['datacenter', null, DEFAULT_PRICES.datacenter.customer],
          ['mobile', null, DEFAULT_PRICES.mobile.customer],
          ['residential', null, DEFAULT_PRICES.residential.customer],
        ],
      );
      assert.equal(billing.card_payments, false);
      assert.deepEqual(
        billing.ledger.items.map((line: LedgerLine) => [line.kind, line.book, line.amount.amount]),
        [['trial', 'balance', '3.50']],
      );
      assert.equal(billing.ledger.next_cursor, null);
    });

    test('every movement is a line, newest first, and the pages join up without gaps', async () => {
      assert.equal(await adjust('goodwill-1', 1_250_000, 'goodwill for an outage'), true);
      assert.equal(await adjust('goodwill-1', 1_250_000, 'the same cause again'), false);
      assert.equal(await adjust('correction-1', -250_000, 'double credit corrected'), true);

      const billing = (await agent.get('/v1/billing').expect(200)).body;
      assert.equal(billing.balance.amount_micro, 3_500_000 + 1_250_000 - 250_000);
      const all: LedgerLine[] = (await agent.get('/v1/billing/ledger').expect(200)).body.items;
      assert.deepEqual(
        all.map((line) => [line.kind, line.amount.amount_micro, line.memo]),
        [
          ['adjustment', -250_000, 'double credit corrected'],
          ['adjustment', 1_250_000, 'goodwill for an outage'],
          ['trial', 3_500_000, 'trial credit'],
        ],
      );
      // The balance is the sum of its lines.
      assert.equal(
        all.reduce((sum, line) => sum + line.amount.amount_micro, 0),
        billing.balance.amount_micro,
      );

      const paged: LedgerLine[] = [];
      let cursor: string | null = null;
      do {
        const query: Record<string, string> = { limit: '1', ...(cursor ? { cursor } : {}) };
        const page = (await agent.get('/v1/billing/ledger').query(query).expect(200)).body;
        assert.ok(page.items.length <= 1);
        paged.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
      assert.deepEqual(paged, all);
    });

    test('a cursor this server did not give out is refused', async () => {
      const res = await agent.get('/v1/billing/ledger').query({ cursor: 'bm9wZQ' }).expect(400);
      assert.equal(res.body.error.code, 'invalid_request');
    });

    test("another account sees none of this account's lines", async () => {
      const other = await signUp(api.app, 'other');
      const lines: LedgerLine[] = (await other.agent.get('/v1/billing/ledger').expect(200)).body
        .items;
      assert.deepEqual(
        lines.map((line) => line.kind),
        ['trial'],
      );
    });

    test('without Stripe, checkout answers billing_disabled and everything else works', async () => {
      const res = await agent.post('/v1/billing/checkout').set('X-CSRF-Token', csrf).expect(501);
      assert.equal(res.body.error.code, 'billing_disabled');
      await agent.get('/v1/billing').expect(200);
    });

    test('an API key with the api scope reads billing as a bearer token', async () => {
      const key = (
        await agent
          .post('/v1/keys')
          .set('X-CSRF-Token', csrf)
          .send({ scopes: ['api'] })
          .expect(201)
      ).body;
      const res = await agent
        .get('/v1/billing')
        .set('Authorization', `Bearer ${key.id}.${key.secret}`)
        .expect(200);
      assert.equal(res.body.balance.currency, 'eur');
    });
  });
}
