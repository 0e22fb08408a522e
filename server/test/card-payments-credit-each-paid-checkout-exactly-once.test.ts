/**
 * Card payments end to end, against the real server with the real `stripe` library
 * pointed at a local stand-in (STRIPE_API_URL): checkout sends Stripe the amount, currency,
 * account and the customer's Idempotency-Key; Stripe's signed webhook credits each paid
 * session exactly once whatever is redelivered, in whatever order, and across a server
 * killed mid-delivery; bad signatures write nothing; the audit is clean at the end. On
 * the embedded database, and on PostgreSQL when DATABASE_URL is set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { stripeIdempotencyKey } from '../src/payments/index.ts';
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
  paid,
  type StandInSession,
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
  stripeSignature,
} from './support/stripe-stand-in.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const run = promisify(execFile);

const SECRET_KEY = 'sk_test_standin';
const WEBHOOK_SECRET = 'whsec_standin_secret';

const modes = serverStores;

interface Checkout {
  id: string;
  url: string;
  amount: { currency: string; amount_micro: number; amount: string };
}

/** A JSON answer, as the shape the test expects (the server checks it against the document). */
const json = async <T>(res: Response | Promise<Response>): Promise<T> =>
  (await (await res).json()) as T;

interface LedgerLine {
  kind: string;
  amount: { amount_micro: number; amount: string };
  memo: string;
  receipt_url: string | null;
}

for (const mode of modes) {
  describe(`card payments on ${mode.name}`, { skip: mode.skip }, () => {
    let stripe: StripeStandIn;
    let receiver: WebhookReceiver;
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
        PORTAL_URL: 'https://portal.example.test/billing',
        // The customer's webhook receiver listens on loopback.
        WEBHOOK_ALLOW_TARGETS: '127.0.0.0/8',
        WEBHOOK_RETRY_BASE_MS: '200',
      });

    before(async () => {
      stripe = await startStripeStandIn();
      receiver = await startWebhookReceiver();
      store = await mode.setUp();
      server = await startServer(env());
      // The session outlives a restart (it is in the database); the port does not.
      api = await signedInApi(() => server.ports.api, 'buyer@example.com');
      accountId = (await json<{ account: { id: string } }>(api('/v1/me'))).account.id;
      const hook = await api('/v1/webhooks', {
        method: 'POST',
        body: JSON.stringify({ url: receiver.url, events: ['topup.succeeded', 'topup.failed'] }),
      });
      assert.equal(hook.status, 201, await hook.clone().text());
    });
    after(async () => {
      await server?.stop('SIGKILL');
      await stripe?.close();
      await receiver?.close();
      await store?.dispose();
    });

    const checkout = (body: unknown, key?: string) =>
      api('/v1/billing/checkout', {
        method: 'POST',
        body: JSON.stringify(body),
        headers: key ? { 'idempotency-key': key } : {},
      });

    /** A paid session of `amount` made through the API, as Stripe keeps it. */
    const boughtSession = async (amount: string): Promise<StandInSession> => {
      const res = await checkout({ amount });
      assert.equal(res.status, 201, await res.clone().text());
      const session = stripe.sessions.get((await json<Checkout>(res)).id);
      assert.ok(session);
      return paid(session);
    };

    /** POSTs a Stripe event as Stripe does: raw JSON, signed. */
    const deliver = (
      event: object,
      sign: { secret?: string; timestamp?: number; body?: string; header?: string | null } = {},
    ) => {
      const payload = JSON.stringify(event);
      const header =
        sign.header === undefined
          ? stripeSignature(payload, sign.secret ?? WEBHOOK_SECRET, sign.timestamp)
          : sign.header;
      return fetch(`http://127.0.0.1:${server.ports.api}/v1/billing/stripe-webhook`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
          ...(header === null ? {} : { 'stripe-signature': header }),
        },
        body: sign.body ?? payload,
      });
    };

    const balance = async (): Promise<number> =>
      (await json<{ balance: { amount_micro: number } }>(api('/v1/billing'))).balance.amount_micro;
    const topups = async (): Promise<LedgerLine[]> =>
      (await json<{ items: LedgerLine[] }>(api('/v1/billing/ledger'))).items.filter(
        (line) => line.kind === 'topup',
      );

    test('checkout of a pack sends Stripe its amount, currency, account and the Idempotency-Key', async () => {
      const res = await checkout({ pack: 'growth' }, 'buy-growth-1');
      assert.equal(res.status, 201, await res.clone().text());
      const answer = await json<Checkout>(res);
      assert.match(answer.id, /^cs_test_/);
      assert.equal(answer.url, `https://checkout.stripe.com/c/pay/${answer.id}`);
      assert.deepEqual(answer.amount, {
        currency: 'usd',
        amount_micro: 50_000_000,
        amount: '50.00',
      });

      const sent = stripe.requests.filter((r) => r.path === '/v1/checkout/sessions');
      assert.equal(sent.length, 1);
      const [request] = sent;
      assert.ok(request);
      assert.equal(request.method, 'POST');
      assert.equal(request.authorization, `Bearer ${SECRET_KEY}`);
      assert.equal(request.idempotencyKey, stripeIdempotencyKey(accountId, 'buy-growth-1'));
      assert.deepEqual(
        {
          mode: request.form.mode,
          currency: request.form['line_items[0][price_data][currency]'],
          unitAmount: request.form['line_items[0][price_data][unit_amount]'],
          quantity: request.form['line_items[0][quantity]'],
          client: request.form.client_reference_id,
          account: request.form['metadata[account_id]'],
          micro: request.form['metadata[amount_micro]'],
        },
        {
          mode: 'payment',
          currency: 'usd',
          unitAmount: '5000',
          quantity: '1',
          client: accountId,
          account: accountId,
          micro: '50000000',
        },
      );
      assert.equal(
        request.form.success_url,
        'https://portal.example.test/billing?checkout=succeeded&session_id={CHECKOUT_SESSION_ID}',
      );
      assert.equal(
        request.form.cancel_url,
        'https://portal.example.test/billing?checkout=cancelled',
      );
    });

    test('a retried checkout with the same Idempotency-Key answers the same session', async () => {
      const first = await json<Checkout>(checkout({ pack: 'starter' }, 'buy-starter-1'));
      // The first answer is kept just after it is sent: until then a retry is told it still runs.
      let retry = await checkout({ pack: 'starter' }, 'buy-starter-1');
      await eventually(
        async () => {
          if (retry.status !== 409) return true;
          retry = await checkout({ pack: 'starter' }, 'buy-starter-1');
          return false;
        },
        5_000,
        'the first answer to be kept',
      );
      assert.equal(retry.status, 201);
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
      assert.equal((await json<Checkout>(retry)).id, first.id);
      const other = await checkout({ pack: 'scale' }, 'buy-starter-1');
      assert.equal(other.status, 409, 'the same key for another purchase');
      const sent = stripe.requests.filter(
        (r) => r.idempotencyKey === stripeIdempotencyKey(accountId, 'buy-starter-1'),
      );
      assert.equal(sent.length, 1, 'Stripe was asked once');
    });

    test('an amount must be whole cents from 5.00 to 10000.00, or one of the packs', async () => {
      const ok = await json<Checkout>(checkout({ amount: '25.00' }));
      assert.equal(stripe.sessions.get(ok.id)?.amount_total, 2500);
      for (const body of [
        { amount: '4.99' },
        { amount: '10000.01' },
        { amount: '25.001' },
        { amount: `25${'0'.repeat(12)}` },
        { amount: 25 },
        { pack: 'huge' },
        { amount: '25.00', pack: 'starter' },
        {},
      ]) {
        const res = await checkout(body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal((await json<{ error: { code: string } }>(res)).error.code, 'invalid_request');
      }
    });

    test('a paid checkout.session.completed credits exactly its amount, with the receipt and a topup.succeeded webhook', async () => {
      const session = await boughtSession('50.00');
      const before = await balance();
      const event = stripeEvent('checkout.session.completed', session);
      const res = await deliver(event);
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(await res.json(), { received: true });

      assert.equal(await balance(), before + 50_000_000);
      const [line] = await topups();
      assert.equal(line?.amount.amount_micro, 50_000_000);
      assert.equal(line?.memo, 'card payment');
      assert.equal(line?.receipt_url, stripe.receiptOf(session.payment_intent));
      const asked = stripe.requests.filter((r) => r.path.startsWith('/v1/payment_intents/'));
      assert.deepEqual(
        asked.map((r) => [r.method, r.path, r.form['expand[0]']]),
        [['GET', `/v1/payment_intents/${session.payment_intent}`, 'latest_charge']],
      );

      const [hook] = await receiver.waitFor(1, (got) => got.event.type === 'topup.succeeded');
      assert.equal(hook?.event.account_id, accountId);
      assert.deepEqual(hook?.event.data, {
        checkout_session_id: session.id,
        amount: { currency: 'usd', amount_micro: 50_000_000, amount: '50.00' },
        receipt_url: stripe.receiptOf(session.payment_intent),
      });

      // Redelivered, and then the other event about the same payment: nothing more.
      assert.equal((await deliver(event)).status, 200);
      const later = stripeEvent('checkout.session.async_payment_succeeded', session);
      assert.equal((await deliver(later)).status, 200);
      assert.equal(await balance(), before + 50_000_000);
      assert.equal((await topups()).length, 1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(
        receiver.received.filter((got) => got.event.type === 'topup.succeeded').length,
        1,
      );
    });

    test('the two events of one payment in the other order credit it once', async () => {
      const session = await boughtSession('25.00');
      const before = await balance();
      const succeeded = stripeEvent('checkout.session.async_payment_succeeded', session);
      const completed = stripeEvent('checkout.session.completed', session);
      assert.equal((await deliver(succeeded)).status, 200);
      assert.equal((await deliver(completed)).status, 200);
      assert.equal((await deliver(succeeded)).status, 200);
      assert.equal(await balance(), before + 25_000_000);
      assert.equal((await topups()).length, 2);
    });

    test('a session completed unpaid credits nothing, and its failed payment sends topup.failed', async () => {
      const session = await boughtSession('10.00');
      const before = await balance();
      const unpaid = { ...session, payment_status: 'unpaid' };
      assert.equal((await deliver(stripeEvent('checkout.session.completed', unpaid))).status, 200);
      assert.equal(await balance(), before);
      const failed = stripeEvent('checkout.session.async_payment_failed', unpaid);
      assert.equal((await deliver(failed)).status, 200);
      const [hook] = await receiver.waitFor(1, (got) => got.event.type === 'topup.failed');
      assert.equal(
        hook?.event.data &&
          (hook.event.data as { checkout_session_id: string }).checkout_session_id,
        session.id,
      );
      assert.equal(await balance(), before);
    });

    test('a tampered body, another secret, an old timestamp or no signature is 400 and writes nothing', async () => {
      const session = await boughtSession('30.00');
      const before = await balance();
      const event = stripeEvent('checkout.session.completed', session);
      const tampered = JSON.stringify({
        ...event,
        data: { object: { ...session, amount_total: 3_000_000 } },
      });
      const sixMinutesAgo = Math.floor(Date.now() / 1000) - 360;
      for (const [what, sign] of [
        ['tampered', { body: tampered }],
        ['another secret', { secret: 'whsec_someone_else' }],
        ['old timestamp', { timestamp: sixMinutesAgo }],
        ['no signature', { header: null }],
        ['a garbled header', { header: 't=abc,v1=zz' }],
      ] as const) {
        const res = await deliver(event, sign);
        assert.equal(res.status, 400, what);
        assert.equal(
          (await json<{ error: { code: string } }>(res)).error.code,
          'invalid_request',
          what,
        );
      }
      assert.equal(await balance(), before);
      // Nothing was recorded either: the genuine delivery of the same event still credits.
      assert.equal((await deliver(event)).status, 200);
      assert.equal(await balance(), before + 30_000_000);
    });

    test('an unknown event type, another currency or an unknown account is acknowledged and credits nothing', async () => {
      const session = await boughtSession('40.00');
      const before = await balance();
      const unknown = stripeEvent('customer.created', { id: 'cus_1', object: 'customer' });
      assert.equal((await deliver(unknown)).status, 200);
      const euros = stripeEvent('checkout.session.completed', { ...session, currency: 'eur' });
      assert.equal((await deliver(euros)).status, 200);
      const stranger = stripeEvent('checkout.session.completed', {
        ...session,
        id: 'cs_test_stranger',
        client_reference_id: 'nobodyhere',
        metadata: { account_id: 'nobodyhere' },
      });
      assert.equal((await deliver(stranger)).status, 200);
      assert.equal(await balance(), before);
    });

    test('a receipt Stripe cannot give does not hold up the credit', async () => {
      const session = await boughtSession('15.00');
      const before = await balance();
      stripe.paymentIntentTrouble = 'fail';
      try {
        assert.equal(
          (await deliver(stripeEvent('checkout.session.completed', session))).status,
          200,
        );
      } finally {
        stripe.paymentIntentTrouble = 'none';
      }
      assert.equal(await balance(), before + 15_000_000);
      const [line] = await topups();
      assert.equal(line?.receipt_url, null);
    });

    test('a server killed while a webhook is in flight credits it exactly once when Stripe redelivers', async () => {
      const session = await boughtSession('20.00');
      const before = await balance();
      const event = stripeEvent('checkout.session.completed', session);

      // The server is mid-event (asking Stripe for the receipt) when it is killed.
      stripe.paymentIntentTrouble = 'hang';
      const asked = stripe.requests.length;
      const cut = deliver(event).catch((error: unknown) => error);
      await eventually(
        () => stripe.requests.slice(asked).some((r) => r.path.startsWith('/v1/payment_intents/')),
        10_000,
        'the server to ask Stripe for the receipt',
      );
      await server.stop('SIGKILL');
      assert.ok((await cut) instanceof Error, 'Stripe got no answer');
      stripe.paymentIntentTrouble = 'none';

      server = await startServer(env());
      assert.equal((await deliver(event)).status, 200);
      assert.equal(await balance(), before + 20_000_000);

      // Killed after it answered: the redelivery finds the event applied.
      await server.stop('SIGKILL');
      server = await startServer(env());
      assert.equal((await deliver(event)).status, 200);
      assert.equal(await balance(), before + 20_000_000);
      assert.equal(
        (await topups()).filter((line) => line.amount.amount_micro === 20_000_000).length,
        1,
      );
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

      const { database, close } = await openDatabase(
        {
          databaseUrl: store.env.DATABASE_URL,
          redisUrl: undefined,
          dataDir: store.env.DATA_DIR ?? '',
        },
        quietLogger,
      );
      try {
        const recorded = await database.query<{ type: string }>('SELECT type FROM stripe_events');
        assert.ok(recorded.length > 0);
        assert.ok(
          recorded.every((row) => row.type.startsWith('checkout.session.')),
          'an event of an unhandled type is not even recorded',
        );
        const [topups] = await database.query<{ count: number }>(
          `SELECT count(*)::int AS count FROM journal_entries WHERE kind = 'topup'`,
        );
        assert.equal(topups?.count, 5, 'one per paid session: 50, 25, 30, 15 and 20');
      } finally {
        await close();
      }
    });
  });
}
