/**
 * Payouts end to end, against the real server with the real `stripe` library pointed at
 * the local stand-in: an operator links a connected account, earnings newer than the hold
 * period and payouts below the minimum are refused, a payout is a transfer under the
 * payout's id as idempotency key, a transfer Stripe refuses is reversed at once, a
 * reversed transfer gives the earnings back once however often it is reported, and the
 * audit is clean at the end. On the embedded database, and on PostgreSQL when
 * DATABASE_URL is set. Earnings are written as the flusher writes them, for exact figures.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { books, postEntry, transfer } from '../src/billing/index.ts';
import { openDatabase } from '../src/store/index.ts';
import { eventually, quietLogger, serverStores } from './support/engines.ts';
import {
  SERVER_DIR,
  type ServerProcess,
  type SignedInApi,
  serverEnv,
  signedInApi,
  startServer,
} from './support/server-process.ts';
import {
  deliverStripeEvent,
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
} from './support/stripe-stand-in.ts';

const run = promisify(execFile);

const SECRET_KEY = 'sk_test_standin';
const WEBHOOK_SECRET = 'whsec_standin_secret';
const DAY_MS = 86_400_000;
const GB = 1_000_000_000;

const modes = serverStores;

const json = async <T>(res: Response | Promise<Response>): Promise<T> =>
  (await (await res).json()) as T;

interface Money {
  currency: string;
  amount_micro: number;
  amount: string;
}
interface PayoutView {
  id: string;
  amount: Money;
  status: string;
  stripe_transfer_id: string | null;
  reversed: Money;
  failure: string | null;
}
interface PayoutAccountView {
  stripe_account_id: string | null;
  payouts_enabled: boolean;
  owed: Money;
  held: Money;
  available: Money;
  minimum: Money;
  hold_days: number;
}

for (const mode of modes) {
  describe(`payouts on ${mode.name}`, { skip: mode.skip }, () => {
    let stripe: StripeStandIn;
    let store: { env: Record<string, string>; dispose(): Promise<void> };
    let server: ServerProcess;
    let api: SignedInApi;
    let accountId: string;

    const env = () =>
      serverEnv({
        ...store.env,
        STRIPE_SECRET_KEY: SECRET_KEY,
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_URL: stripe.url,
        PORTAL_URL: 'https://portal.example.test/earnings',
      });

    const withDatabase = async <T>(
      fn: (db: Awaited<ReturnType<typeof openDatabase>>['database']) => Promise<T>,
    ): Promise<T> => {
      const { database, close } = await openDatabase(
        {
          databaseUrl: store.env.DATABASE_URL,
          redisUrl: undefined,
          dataDir: store.env.DATA_DIR ?? '',
        },
        quietLogger,
      );
      try {
        return await fn(database);
      } finally {
        await close();
      }
    };

    before(async () => {
      stripe = await startStripeStandIn();
      store = await mode.setUp();
      server = await startServer(env());
      // The session outlives a restart (it is in the database); the port does not.
      api = await signedInApi(() => server.ports.api, 'operator@example.com');
      accountId = (await json<{ account: { id: string } }>(api('/v1/me'))).account.id;
      const node = await json<{ id: string }>(
        api('/v1/nodes', { method: 'POST', body: JSON.stringify({ name: 'home' }) }),
      );
      const key = await json<{ id: string }>(
        api('/v1/keys', { method: 'POST', body: JSON.stringify({ name: 'traffic' }) }),
      );
      // An embedded server locks its data directory: the earnings are written while it is down.
      assert.equal(await server.stop('SIGTERM'), 0);
      const hour = (daysAgo: number) =>
        new Date(Math.floor((Date.now() - daysAgo * DAY_MS) / 3_600_000) * 3_600_000);
      await withDatabase((db) =>
        db.transaction(async (tx) => {
          // 110 GB twenty days ago (44.00 at 0.40/GB, payable) and 10 GB yesterday (4.00, held).
          for (const [daysAgo, bytes] of [
            [20, 110 * GB],
            [1, 10 * GB],
          ] as const) {
            await tx.query(
              `INSERT INTO usage_hourly (key_id, node_id, country, hour, exit_type, bytes_up,
                 bytes_down, requests, customer_micro_per_gb, operator_micro_per_gb,
                 charged_micro, earned_micro)
               VALUES ($1, $2, '', $3, 'residential', 0, $4, 1, 0, 400000, 0, $5)`,
              [key.id, node.id, hour(daysAgo), bytes, (bytes / GB) * 400_000],
            );
          }
          await postEntry(tx, {
            kind: 'earning',
            reference: `seed:${accountId}`,
            currency: 'usd',
            accountId,
            postings: transfer(books.operatorCost, books.operator(accountId), 48_000_000),
          });
        }),
      );
      server = await startServer(env());
    });
    after(async () => {
      await server?.stop('SIGKILL');
      await stripe?.close();
      await store?.dispose();
    });

    const payout = (body: unknown = {}) =>
      api('/v1/payouts', { method: 'POST', body: JSON.stringify(body) });
    const account = () => json<PayoutAccountView>(api('/v1/payouts/account'));
    const code = async (res: Response) => (await json<{ error: { code: string } }>(res)).error.code;

    const deliver = (event: object) => deliverStripeEvent(server.ports.api, event, WEBHOOK_SECRET);

    test('a payout before a Stripe account is linked is refused with payout_account_missing', async () => {
      const res = await payout();
      assert.equal(res.status, 409);
      assert.equal(await code(res), 'payout_account_missing');
    });

    test('linking makes one Express account and answers its onboarding link each time', async () => {
      const first = await api('/v1/payouts/account', { method: 'POST' });
      assert.equal(first.status, 201, await first.clone().text());
      const linked = await json<{ stripe_account_id: string; url: string }>(first);
      assert.match(linked.stripe_account_id, /^acct_/);
      assert.match(linked.url, /^https:\/\/connect\.stripe\.com\//);
      const again = await json<{ stripe_account_id: string }>(
        api('/v1/payouts/account', { method: 'POST' }),
      );
      assert.equal(again.stripe_account_id, linked.stripe_account_id);

      const created = stripe.requests.filter((r) => r.path === '/v1/accounts');
      assert.equal(created.length, 1);
      assert.equal(created[0]?.form.type, 'express');
      assert.equal(created[0]?.form['metadata[account_id]'], accountId);
      const links = stripe.requests.filter((r) => r.path === '/v1/account_links');
      assert.equal(links.length, 2);
      assert.equal(links[0]?.form.account, linked.stripe_account_id);
      assert.equal(
        links[0]?.form.return_url,
        'https://portal.example.test/earnings?payouts=linked',
      );
      assert.equal(
        links[0]?.form.refresh_url,
        'https://portal.example.test/earnings?payouts=refresh',
      );

      let shown = await account();
      assert.equal(shown.payouts_enabled, false);
      const standIn = stripe.connectedAccounts.get(linked.stripe_account_id);
      assert.ok(standIn);
      standIn.details_submitted = true;
      standIn.payouts_enabled = true;
      shown = await account();
      assert.equal(shown.stripe_account_id, linked.stripe_account_id);
      assert.equal(shown.payouts_enabled, true);
      assert.deepEqual(
        [shown.owed.amount, shown.held.amount, shown.available.amount, shown.minimum.amount],
        ['48.00', '4.00', '44.00', '20.00'],
      );
      assert.equal(shown.hold_days, 14);
    });

    test('earnings inside the hold window are not payable', async () => {
      const res = await payout({ amount: '44.01' });
      assert.equal(res.status, 409);
      assert.equal(await code(res), 'payout_exceeds_available');
      assert.equal(stripe.requests.filter((r) => r.path === '/v1/transfers').length, 0);
    });

    test('a payout below the minimum is refused', async () => {
      const res = await payout({ amount: '19.99' });
      assert.equal(res.status, 409);
      assert.equal(await code(res), 'payout_below_minimum');
      assert.equal((await account()).owed.amount_micro, 48_000_000);
    });

    test('a transfer Stripe refuses leaves the payable as it was, reversed in the ledger', async () => {
      stripe.transferTrouble = 'refuse';
      let refused: PayoutView;
      try {
        const res = await payout({ amount: '20.00' });
        assert.equal(res.status, 201, await res.clone().text());
        refused = await json<PayoutView>(res);
      } finally {
        stripe.transferTrouble = 'none';
      }
      assert.equal(refused.status, 'failed');
      assert.match(refused.failure ?? '', /insufficient available funds/);
      assert.equal((await account()).owed.amount_micro, 48_000_000);
      const lines = (
        await json<{ items: { kind: string; amount: Money }[] }>(api('/v1/billing/ledger'))
      ).items.filter((line) => line.kind.startsWith('payout'));
      assert.deepEqual(
        lines.map((line) => [line.kind, line.amount.amount_micro]),
        [
          ['payout_reversal', 20_000_000],
          ['payout', -20_000_000],
        ],
      );
    });

    let paid: PayoutView;

    test('a payout pays everything available as a transfer keyed by the payout id', async () => {
      const res = await payout();
      assert.equal(res.status, 201, await res.clone().text());
      paid = await json<PayoutView>(res);
      assert.equal(paid.status, 'paid');
      assert.equal(paid.amount.amount, '44.00');
      assert.match(paid.stripe_transfer_id ?? '', /^tr_/);

      const shown = await account();
      assert.equal(shown.owed.amount, '4.00');
      assert.equal(shown.available.amount_micro, 0);
      const sent = stripe.requests.filter((r) => r.path === '/v1/transfers');
      const last = sent.at(-1);
      assert.equal(last?.idempotencyKey, paid.id);
      assert.deepEqual(
        [last?.form.amount, last?.form.currency, last?.form.destination],
        ['4400', 'usd', shown.stripe_account_id],
      );
      assert.equal(last?.form['metadata[payout_id]'], paid.id);

      const listed = await json<{ items: PayoutView[]; next_cursor: string | null }>(
        api('/v1/payouts'),
      );
      assert.deepEqual(
        listed.items.map((item) => item.status),
        ['failed', 'paid'],
      );
      assert.equal(listed.next_cursor, null);
      const nothingLeft = await payout();
      assert.equal(nothingLeft.status, 409);
      assert.equal(await code(nothingLeft), 'payout_below_minimum');
    });

    test('transfer.reversed gives a paid payout back once, however often it is reported', async () => {
      const made = stripe.transfers.get(paid.stripe_transfer_id ?? '');
      assert.ok(made);
      const reversed = { ...made, amount_reversed: 4400, reversed: true };
      const event = stripeEvent('transfer.reversed', reversed);
      assert.equal((await deliver(event)).status, 200);
      assert.equal((await deliver(event)).status, 200);
      // The same reversal reported again under another event id changes nothing either.
      assert.equal((await deliver(stripeEvent('transfer.reversed', reversed))).status, 200);

      assert.equal((await account()).owed.amount_micro, 48_000_000);
      const listed = await json<{ items: PayoutView[] }>(api('/v1/payouts'));
      const after = listed.items.find((item) => item.id === paid.id);
      assert.equal(after?.status, 'reversed');
      assert.equal(after?.reversed.amount, '44.00');
    });

    const transfersOf = (payoutId: string) =>
      [...stripe.transfers.values()].filter((made) => made.transfer_group === payoutId);

    /** Asks for a payout that Stripe holds, kills the server, and starts it again. */
    const payoutThroughACrash = async (trouble: 'hang-made' | 'hang-unmade') => {
      const earlier = new Set(
        (await json<{ items: PayoutView[] }>(api('/v1/payouts'))).items.map((item) => item.id),
      );
      const asked = stripe.requests.filter((r) => r.path === '/v1/transfers').length;
      stripe.transferTrouble = trouble;
      const answer = payout({ amount: '20.00' }).catch(() => null);
      try {
        await eventually(
          () => stripe.requests.filter((r) => r.path === '/v1/transfers').length > asked,
          10_000,
          'the transfer reached Stripe',
        );
        await server.stop('SIGKILL');
        assert.equal(await answer, null, 'the killed server answered nothing');
      } finally {
        stripe.transferTrouble = 'none';
      }
      // The worst case: the crash outlasted Stripe's 24-hour memory of idempotency keys.
      stripe.forgetIdempotencyKeys();
      const pending = await withDatabase((db) =>
        db.query<{ id: string; status: string }>('SELECT id, status FROM payouts'),
      );
      const crashed = pending.filter((row) => !earlier.has(row.id));
      assert.deepEqual(
        crashed.map((row) => row.status),
        ['pending'],
      );
      server = await startServer(env());
      const id = crashed[0]?.id ?? '';
      let settled: PayoutView | undefined;
      await eventually(
        async () => {
          const listed = await json<{ items: PayoutView[] }>(api('/v1/payouts'));
          settled = listed.items.find((item) => item.id === id);
          return settled?.status === 'paid';
        },
        15_000,
        'the payout is settled after the restart',
      );
      return { id, settled: settled as PayoutView };
    };

    test('a payout whose transfer Stripe made but whose answer a crash lost is marked paid after a restart, and not paid twice', async () => {
      const owed = (await account()).owed.amount_micro;
      const { id, settled } = await payoutThroughACrash('hang-made');
      const made = transfersOf(id);
      assert.equal(made.length, 1);
      assert.equal(settled.stripe_transfer_id, made[0]?.id);
      assert.equal((await account()).owed.amount_micro, owed - 20_000_000);
    });

    test('a payout a crash stopped before Stripe made its transfer is made once after a restart', async () => {
      const owed = (await account()).owed.amount_micro;
      const { id, settled } = await payoutThroughACrash('hang-unmade');
      const made = transfersOf(id);
      assert.equal(made.length, 1);
      assert.equal(made[0]?.amount, 2000);
      assert.equal(settled.stripe_transfer_id, made[0]?.id);
      assert.equal((await account()).owed.amount_micro, owed - 20_000_000);
    });

    test('npm run admin -- audit finds the ledger clean', async () => {
      assert.equal(await server.stop('SIGTERM'), 0);
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'src/admin/main.ts', 'audit'],
        { cwd: SERVER_DIR, env: { PATH: process.env.PATH, ...store.env } },
      );
      assert.match(stdout, /^audit: clean \(\d+ journal entries, 1 accounts\)\n$/);
      const entries = await withDatabase((db) =>
        db.query<{ kind: string; count: number }>(
          `SELECT kind, count(*)::int AS count FROM journal_entries
           WHERE kind LIKE 'payout%' GROUP BY kind ORDER BY kind`,
        ),
      );
      assert.deepEqual(entries, [
        { kind: 'payout', count: 4 },
        { kind: 'payout_reversal', count: 2 },
      ]);
    });
  });
}
