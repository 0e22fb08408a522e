/**
 * Refunds and disputes of card top-ups, end to end against the real server with Stripe's
 * signed webhook: a refund takes back exactly what Stripe refunded (partly, then the
 * rest), a dispute takes its amount back when opened and gives it back when won, each
 * once however often and in whatever order the events come, even before the payment's
 * own event; the audit is clean at the end. On the embedded database, and on PostgreSQL
 * when DATABASE_URL is set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createScratchDatabase, needs, required } from './support/engines.ts';
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
  paid,
  type StandInSession,
  type StripeStandIn,
  startStripeStandIn,
  stripeCharge,
  stripeDispute,
  stripeEvent,
  stripeRefund,
} from './support/stripe-stand-in.ts';

const run = promisify(execFile);

const SECRET_KEY = 'sk_test_standin';
const WEBHOOK_SECRET = 'whsec_standin_secret';

const modes = [
  {
    name: 'embedded',
    skip: false as string | false,
    async setUp() {
      const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-refunds-'));
      return {
        env: { DATA_DIR: path.join(dir, 'data') } as Record<string, string>,
        dispose: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'PostgreSQL',
    skip: needs('DATABASE_URL'),
    async setUp() {
      const scratch = await createScratchDatabase(required('DATABASE_URL'));
      return {
        env: { DATABASE_URL: scratch.url } as Record<string, string>,
        dispose: () => scratch.drop(),
      };
    },
  },
];

const json = async <T>(res: Response | Promise<Response>): Promise<T> =>
  (await (await res).json()) as T;

interface LedgerLine {
  kind: string;
  amount: { amount_micro: number };
  memo: string;
}

for (const mode of modes) {
  describe(`refunds and disputes on ${mode.name}`, { skip: mode.skip }, () => {
    let stripe: StripeStandIn;
    let store: { env: Record<string, string>; dispose(): Promise<void> };
    let server: ServerProcess;
    let api: SignedInApi;

    before(async () => {
      stripe = await startStripeStandIn();
      store = await mode.setUp();
      server = await startServer(
        serverEnv({
          ...store.env,
          STRIPE_SECRET_KEY: SECRET_KEY,
          STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
          STRIPE_API_URL: stripe.url,
        }),
      );
      // The session outlives a restart (it is in the database); the port does not.
      api = await signedInApi(() => server.ports.api, 'payer@example.com');
    });
    after(async () => {
      await server?.stop('SIGKILL');
      await stripe?.close();
      await store?.dispose();
    });

    const deliver = async (event: object) => {
      const res = await deliverStripeEvent(server.ports.api, event, WEBHOOK_SECRET);
      assert.equal(res.status, 200, await res.text());
    };
    /** Delivers the event twice, as Stripe may. */
    const deliverTwice = async (event: object) => {
      await deliver(event);
      await deliver(event);
    };

    const balance = async (): Promise<number> =>
      (await json<{ balance: { amount_micro: number } }>(api('/v1/billing'))).balance.amount_micro;
    const lines = async (kind: string): Promise<LedgerLine[]> =>
      (await json<{ items: LedgerLine[] }>(api('/v1/billing/ledger?limit=100'))).items.filter(
        (line) => line.kind === kind,
      );

    /** A session of `cents` bought through the API and paid, as Stripe keeps it. */
    const bought = async (cents: number): Promise<StandInSession> => {
      const res = await api('/v1/billing/checkout', {
        method: 'POST',
        body: JSON.stringify({ amount: (cents / 100).toFixed(2) }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const session = stripe.sessions.get((await json<{ id: string }>(res)).id);
      assert.ok(session);
      return paid(session);
    };
    const credited = async (cents: number): Promise<StandInSession> => {
      const session = await bought(cents);
      await deliver(stripeEvent('checkout.session.completed', session));
      return session;
    };
    const refunded = (session: StandInSession, cents: number) =>
      stripeEvent(
        'charge.refunded',
        stripeCharge(session.payment_intent, session.amount_total, 'usd', cents),
      );

    test('a refund takes back exactly what Stripe refunded, partly then the rest, once each', async () => {
      const session = await credited(2500);
      const start = await balance();

      await deliverTwice(refunded(session, 1000));
      assert.equal(await balance(), start - 10_000_000);
      await deliverTwice(refunded(session, 2500));
      assert.equal(await balance(), start - 25_000_000);

      // An older report of the same charge, arriving late as another event: nothing more.
      await deliver(refunded(session, 1000));
      assert.equal(await balance(), start - 25_000_000);
      assert.deepEqual(
        (await lines('refund')).map((line) => [line.amount.amount_micro, line.memo]),
        [
          [-15_000_000, 'card refund'],
          [-10_000_000, 'card refund'],
        ],
      );
    });

    test('a refund reported before the payment is taken back when the payment is credited', async () => {
      const session = await bought(3000);
      const start = await balance();
      await deliverTwice(refunded(session, 1200));
      assert.equal(await balance(), start, 'nothing to take back from yet');

      await deliver(stripeEvent('checkout.session.completed', session));
      assert.equal(await balance(), start + 30_000_000 - 12_000_000);
      await deliver(stripeEvent('checkout.session.async_payment_succeeded', session));
      assert.equal(await balance(), start + 30_000_000 - 12_000_000);
    });

    test('a refund that fails gives its money back to the balance once, in whatever order Stripe tells', async () => {
      const session = await credited(4000);
      const start = await balance();
      const refund = (status: 'succeeded' | 'failed') =>
        stripeEvent(
          'charge.refund.updated',
          stripeRefund(session.payment_intent, 1500, 'usd', status, 're_test_closed_card'),
        );
      await deliver(refunded(session, 1500));
      await deliverTwice(refund('succeeded'));
      assert.equal(await balance(), start - 15_000_000);
      await deliverTwice(refund('failed'));
      assert.equal(await balance(), start, 'the card was closed: the money is back');
      await deliver(refund('failed'));
      assert.equal(await balance(), start);

      // Failure first, refund after: the same balance.
      const other = await bought(1000);
      const before = await balance();
      await deliver(
        stripeEvent(
          'charge.refund.updated',
          stripeRefund(other.payment_intent, 1000, 'usd', 'failed', 're_test_early_failure'),
        ),
      );
      await deliver(stripeEvent('checkout.session.completed', other));
      await deliver(refunded(other, 1000));
      assert.equal(await balance(), before + 10_000_000);
      assert.deepEqual(
        (await lines('refund'))
          .filter((line) => line.memo !== 'card refund')
          .map((line) => [line.amount.amount_micro, line.memo]),
        [
          [10_000_000, 'card refund failed: back to the balance'],
          [15_000_000, 'card refund failed: back to the balance'],
        ],
      );
    });

    test('a dispute takes its amount back once, and gives it back once when won', async () => {
      const session = await credited(2000);
      const start = await balance();
      const id = 'dp_test_won';
      await deliverTwice(
        stripeEvent(
          'charge.dispute.created',
          stripeDispute(session.payment_intent, 2000, 'usd', 'needs_response', id),
        ),
      );
      assert.equal(await balance(), start - 20_000_000);
      await deliverTwice(
        stripeEvent(
          'charge.dispute.closed',
          stripeDispute(session.payment_intent, 2000, 'usd', 'won', id),
        ),
      );
      assert.equal(await balance(), start);
      assert.deepEqual(
        (await lines('dispute')).map((line) => [line.amount.amount_micro, line.memo]),
        [
          [20_000_000, 'dispute won'],
          [-20_000_000, 'card dispute'],
        ],
      );
    });

    test('a lost dispute keeps the amount taken back, and a late created event changes nothing', async () => {
      const session = await credited(1500);
      const start = await balance();
      const id = 'dp_test_lost';
      const dispute = (status: 'needs_response' | 'lost') =>
        stripeDispute(session.payment_intent, 1500, 'usd', status, id);
      await deliver(stripeEvent('charge.dispute.closed', dispute('lost')));
      assert.equal(await balance(), start - 15_000_000);
      await deliver(stripeEvent('charge.dispute.created', dispute('needs_response')));
      assert.equal(await balance(), start - 15_000_000);
    });

    test('a dispute closed won before it was reported opened nets to nothing', async () => {
      const session = await credited(1000);
      const start = await balance();
      const id = 'dp_test_backwards';
      await deliver(
        stripeEvent(
          'charge.dispute.closed',
          stripeDispute(session.payment_intent, 1000, 'usd', 'won', id),
        ),
      );
      await deliver(
        stripeEvent(
          'charge.dispute.created',
          stripeDispute(session.payment_intent, 1000, 'usd', 'needs_response', id),
        ),
      );
      assert.equal(await balance(), start);
    });

    test("an auto top-up's refund is taken back like a checkout's", async () => {
      const { account } = await json<{ account: { id: string } }>(api('/v1/me'));
      const start = await balance();
      const intent = {
        id: 'pi_test_autotopup',
        object: 'payment_intent',
        amount: 2500,
        amount_received: 2500,
        currency: 'usd',
        status: 'succeeded',
        metadata: { account_id: account.id, purpose: 'auto_topup' },
        latest_charge: 'ch_autotopup',
      };
      await deliver(stripeEvent('payment_intent.succeeded', intent));
      assert.equal(await balance(), start + 25_000_000);
      await deliverTwice(
        stripeEvent('charge.refunded', stripeCharge(intent.id, 2500, 'usd', 2500)),
      );
      assert.equal(await balance(), start);
    });

    test('a refund of a payment this server never credited changes no balance', async () => {
      const start = await balance();
      await deliver(
        stripeEvent('charge.refunded', stripeCharge('pi_test_elsewhere', 5000, 'usd', 5000)),
      );
      await deliver(
        stripeEvent(
          'charge.dispute.created',
          stripeDispute('pi_test_elsewhere', 5000, 'usd', 'needs_response'),
        ),
      );
      // A failed refund of a payment never credited here, and one with no charge or amount.
      await deliver(
        stripeEvent(
          'charge.refund.updated',
          stripeRefund('pi_test_elsewhere', 5000, 'usd', 'failed'),
        ),
      );
      await deliver(
        stripeEvent('charge.refund.updated', {
          ...stripeRefund('pi_test_elsewhere', 0, 'usd', 'failed'),
          charge: null,
        }),
      );
      assert.equal(await balance(), start);
    });

    test('npm run admin -- audit finds the ledger clean', async () => {
      // An embedded server locks its data directory: the command runs after it stops.
      assert.equal(await server.stop('SIGTERM'), 0);
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'src/admin/main.ts', 'audit'],
        { cwd: SERVER_DIR, env: { PATH: process.env.PATH, ...store.env } },
      );
      assert.match(stdout, /^audit: clean \(\d+ journal entries, 1 accounts\)\n$/);
    });
  });
}
