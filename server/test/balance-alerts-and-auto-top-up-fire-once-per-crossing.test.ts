/**
 * Balance alerts and auto top-up, end to end: a real download through the gateway drives
 * the balance under the alert level (balance.low, once) and to zero (balance.exhausted,
 * once); a card saved by a paid Checkout is charged off-session exactly once when the
 * balance crosses the auto top-up threshold, credited once although Stripe's
 * payment_intent.succeeded arrives too, and traffic flows again; a declined card is shown
 * on the account and sent as topup.failed, credits nothing and is not retried; a key at its
 * monthly cap sends key.cap_reached once; the audit is clean at the end. The real `stripe`
 * library talks to a local stand-in. On the embedded database, and on PostgreSQL when
 * DATABASE_URL is set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchangeText } from './support/raw-exchange.ts';
import { SERVER_DIR } from './support/server-process.ts';
import {
  deliverStripeEvent,
  paid,
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
} from './support/stripe-stand-in.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const run = promisify(execFile);
const WEBHOOK_SECRET = 'whsec_standin_secret';

interface Store {
  env: Record<string, string>;
  dispose(): Promise<void>;
}

const modes: { name: string; skip: string | false; setUp(dir: string): Promise<Store> }[] = [
  {
    name: 'the embedded database',
    skip: false,
    setUp: async (dir) => ({ env: { DATA_DIR: path.join(dir, 'data') }, dispose: async () => {} }),
  },
  {
    name: 'PostgreSQL',
    skip: needs('DATABASE_URL'),
    async setUp(dir) {
      const scratch = await createScratchDatabase(required('DATABASE_URL'));
      return {
        env: {
          DATA_DIR: path.join(dir, 'data'),
          DATABASE_URL: scratch.url,
          // With DATABASE_URL set, declared locations are not trusted by default.
          TRUST_DECLARED_LOCATION: 'true',
        },
        dispose: () => scratch.drop(),
      };
    },
  },
];

interface AutoTopUp {
  enabled: boolean;
  threshold: { amount: string };
  amount: { amount: string };
  low_balance_threshold: { amount: string };
  payment_method: { brand: string; last4: string } | null;
  last_failure: { at: string; message: string } | null;
}

for (const mode of modes) {
  describe(`balance alerts and auto top-up on ${mode.name}`, { skip: mode.skip }, () => {
    let dir: string;
    let store: Store;
    let stripe: StripeStandIn;
    let receiver: WebhookReceiver;
    let net: ProxyNetwork;
    let accountId: string;

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ipcola-topup-'));
      store = await mode.setUp(dir);
      stripe = await startStripeStandIn();
      receiver = await startWebhookReceiver();
      net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
        ...store.env,
        // 5 MB at the residential price (4.00 per GB).
        TRIAL_CREDIT: '0.02',
        USAGE_FLUSH_INTERVAL_MS: '300',
        STRIPE_SECRET_KEY: 'sk_test_standin',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_URL: stripe.url,
        WEBHOOK_ALLOW_TARGETS: '127.0.0.0/8',
        WEBHOOK_RETRY_BASE_MS: '200',
      });
      accountId = ((await (await net.api('/v1/me')).json()) as { account: { id: string } }).account
        .id;
      const hook = await net.api('/v1/webhooks', {
        method: 'POST',
        body: JSON.stringify({
          url: receiver.url,
          events: [
            'balance.low',
            'balance.exhausted',
            'key.cap_reached',
            'topup.succeeded',
            'topup.failed',
          ],
        }),
      });
      assert.equal(hook.status, 201, await hook.clone().text());
    });
    after(async () => {
      await net?.close();
      await stripe?.close();
      await receiver?.close();
      await store?.dispose();
      await rm(dir, { recursive: true, force: true });
    });

    const authority = () => `127.0.0.1:${net.targetPort}`;
    const basic = () =>
      Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
    /** Downloads `target` through a CONNECT tunnel until the connection closes. */
    const download = async (target: string): Promise<number> => {
      const socket = connect(net.ports.proxy, '127.0.0.1');
      await once(socket, 'connect');
      socket.on('error', () => {});
      socket.resume();
      socket.write(
        `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n` +
          `GET ${target} HTTP/1.1\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`,
      );
      await new Promise((resolve) => socket.once('close', resolve));
      return socket.bytesRead;
    };
    const connectAnswer = () =>
      exchangeText(
        net.ports.proxy,
        `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic()}\r\n\r\n`,
      );
    const balance = async () =>
      ((await (await net.api('/v1/billing')).json()) as { balance: { amount_micro: number } })
        .balance.amount_micro;
    const settings = async (changes?: object): Promise<AutoTopUp> => {
      const res = await net.api(
        '/v1/billing/auto-topup',
        changes ? { method: 'PUT', body: JSON.stringify(changes) } : {},
      );
      assert.equal(res.status, 200, await res.clone().text());
      return (await res.json()) as AutoTopUp;
    };
    const ofType = (type: string) => receiver.received.filter((got) => got.event.type === type);
    const deliver = (event: object) => deliverStripeEvent(net.ports.api, event, WEBHOOK_SECRET);
    const charges = () =>
      stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents');

    test('a download under the alert level sends balance.low once, and at zero balance.exhausted once', async () => {
      // The exit may still be joining the pool: a few bytes once it is there.
      await eventually(
        async () => (await download('/bytes/2000')) > 2_000,
        30_000,
        'the exit to carry traffic',
      );
      const saved = await settings({ low_balance_threshold: '0.01' });
      assert.equal(saved.low_balance_threshold.amount, '0.01');
      assert.equal(saved.enabled, false);
      await download('/drip');
      assert.match(await connectAnswer(), /^HTTP\/1\.1 402 [\s\S]*X-IPCola-Error: quota_exhausted/);
      await eventually(async () => (await balance()) <= 0, 10_000, 'the balance to reach zero');
      const [low] = await receiver.waitFor(1, (got) => got.event.type === 'balance.low');
      const [exhausted] = await receiver.waitFor(
        1,
        (got) => got.event.type === 'balance.exhausted',
      );
      assert.equal(low?.event.account_id, accountId);
      assert.deepEqual(((low?.event.data ?? {}) as { threshold: unknown }).threshold, {
        currency: 'usd',
        amount_micro: 10_000,
        amount: '0.01',
      });
      assert.ok(((exhausted?.event.data ?? {}) as { balance: { amount_micro: number } }).balance);
      // More flushes of the same crossing (the refused connection, late counts): nothing more.
      await connectAnswer();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(ofType('balance.low').length, 1);
      assert.equal(ofType('balance.exhausted').length, 1);
    });

    test('a paid checkout saves the card, and crossing the threshold charges it off-session exactly once', async () => {
      const res = await net.api('/v1/billing/checkout', {
        method: 'POST',
        body: JSON.stringify({ amount: '5.00' }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const session = stripe.sessions.get(((await res.json()) as { id: string }).id);
      assert.ok(session);
      const sent = stripe.requests.find((r) => r.path === '/v1/checkout/sessions');
      assert.equal(sent?.form['payment_intent_data[setup_future_usage]'], 'off_session');
      assert.match(sent?.form.customer ?? '', /^cus_test_/);
      assert.equal(
        (await deliver(stripeEvent('checkout.session.completed', paid(session)))).status,
        200,
      );
      const card = await settings();
      assert.deepEqual(card.payment_method, { brand: 'visa', last4: '4242' });

      // Just under what the balance is now: no charge until traffic crosses it.
      const before = await balance();
      assert.ok(before > 4_990_000 && before <= 5_000_000, `balance ${before}`);
      const on = await settings({ enabled: true, threshold: '4.99', amount: '5.00' });
      assert.equal(on.enabled, true);
      assert.equal(charges().length, 0);

      // 3 MB at 4.00 per GB is 0.012: below 4.99.
      await download('/stream/3000000');
      await eventually(() => charges().length >= 1, 15_000, 'the off-session charge');
      await eventually(
        async () => (await balance()) > 9_900_000,
        10_000,
        'the top-up to be credited',
      );
      const [charge] = charges();
      assert.ok(charge);
      assert.equal(charge.idempotencyKey, `autotopup-${accountId}-1`);
      assert.deepEqual(
        {
          amount: charge.form.amount,
          currency: charge.form.currency,
          customer: charge.form.customer,
          method: charge.form.payment_method,
          offSession: charge.form.off_session,
          confirm: charge.form.confirm,
          account: charge.form['metadata[account_id]'],
          purpose: charge.form['metadata[purpose]'],
        },
        {
          amount: '500',
          currency: 'usd',
          customer: session.customer,
          method: stripe.paymentMethod.id,
          offSession: 'true',
          confirm: 'true',
          account: accountId,
          purpose: 'auto_topup',
        },
      );
      const credited = await balance();

      // Stripe's own report of the same charge credits nothing more.
      const intent = [...stripe.intents.values()][0];
      assert.ok(intent);
      assert.equal((await deliver(stripeEvent('payment_intent.succeeded', intent))).status, 200);
      const [hook] = await receiver.waitFor(
        1,
        (got) =>
          got.event.type === 'topup.succeeded' && 'payment_intent_id' in (got.event.data as object),
      );
      assert.equal(
        ((hook?.event.data ?? {}) as { payment_intent_id: string }).payment_intent_id,
        intent.id,
      );
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(await balance(), credited);
      assert.equal(ofType('topup.succeeded').length, 2, 'the checkout and the one auto top-up');
      const ledger = (await (await net.api('/v1/billing/ledger')).json()) as {
        items: { kind: string; memo: string; amount: { amount_micro: number } }[];
      };
      const auto = ledger.items.filter((line) => line.memo === 'auto top-up');
      assert.deepEqual(
        auto.map((line) => [line.kind, line.amount.amount_micro]),
        [['topup', 5_000_000]],
      );
      assert.equal(charges().length, 1);

      // Traffic flows again after the quota_exhausted of the first test.
      const moved = await download('/bytes/1000');
      assert.ok(moved > 1_000, `the tunnel carried ${moved} bytes`);
    });

    test('a declined card is shown on the account and sent as topup.failed, credits nothing and is not retried', async () => {
      stripe.declineCards = true;
      const before = await balance();
      // Saving arms it: the balance is already below the new threshold, so it charges now.
      const saved = await settings({ threshold: '20.00' });
      assert.equal(charges().length, 2);
      assert.equal(charges()[1]?.idempotencyKey, `autotopup-${accountId}-2`);
      assert.equal(saved.last_failure?.message, 'Your card was declined.');
      const billing = (await (await net.api('/v1/billing')).json()) as {
        auto_topup: AutoTopUp;
      };
      assert.equal(billing.auto_topup.last_failure?.message, 'Your card was declined.');
      const [failed] = await receiver.waitFor(1, (got) => got.event.type === 'topup.failed');
      assert.deepEqual(failed?.event.data, {
        payment_intent_id: ((failed?.event.data ?? {}) as { payment_intent_id: string })
          .payment_intent_id,
        amount: { currency: 'usd', amount_micro: 5_000_000, amount: '5.00' },
        message: 'Your card was declined.',
      });
      // More traffic under the threshold: no second attempt on this crossing.
      await download('/stream/500000');
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(charges().length, 2);
      assert.ok((await balance()) < before);
      assert.equal(ofType('topup.failed').length, 1);
    });

    test('a charge still processing that Stripe later reports failed is shown and sent as topup.failed once', async () => {
      stripe.declineCards = false;
      stripe.intentStatus = 'processing';
      const before = await balance();
      const failedBefore = ofType('topup.failed').length;
      try {
        // Saving arms it again: a third charge, which Stripe leaves processing.
        await settings({ threshold: '20.00' });
      } finally {
        stripe.intentStatus = 'succeeded';
      }
      assert.equal(charges().length, 3);
      assert.equal(charges()[2]?.idempotencyKey, `autotopup-${accountId}-3`);
      const intent = [...stripe.intents.values()].find((made) => made.status === 'processing');
      assert.ok(intent);
      const failure = {
        ...intent,
        status: 'requires_payment_method',
        last_payment_error: {
          type: 'card_error',
          code: 'card_declined',
          message: 'Your card has insufficient funds.',
        },
      };
      // Reported twice, and once more under another event id.
      const event = stripeEvent('payment_intent.payment_failed', failure);
      assert.equal((await deliver(event)).status, 200);
      assert.equal((await deliver(event)).status, 200);
      assert.equal(
        (await deliver(stripeEvent('payment_intent.payment_failed', failure))).status,
        200,
      );
      assert.equal((await settings()).last_failure?.message, 'Your card has insufficient funds.');
      const [late] = await receiver.waitFor(
        1,
        (got) =>
          got.event.type === 'topup.failed' &&
          (got.event.data as { payment_intent_id: string }).payment_intent_id === intent.id,
      );
      assert.deepEqual(late?.event.data, {
        payment_intent_id: intent.id,
        amount: { currency: 'usd', amount_micro: 5_000_000, amount: '5.00' },
        message: 'Your card has insufficient funds.',
      });
      // The decline of the test before, reported by Stripe's event too: not sent again.
      const declined = ofType('topup.failed')[0]?.event.data as { payment_intent_id: string };
      assert.equal(
        (
          await deliver(
            stripeEvent('payment_intent.payment_failed', {
              ...intent,
              id: declined.payment_intent_id,
              status: 'requires_payment_method',
              last_payment_error: { message: 'Your card was declined.' },
            }),
          )
        ).status,
        200,
      );
      // Failures naming another account, no account, or another currency change nothing.
      for (const metadata of [
        { purpose: 'auto_topup', account_id: 'acct_not_here' },
        { purpose: 'auto_topup' },
      ]) {
        const stray = { ...failure, id: `pi_test_stray_${Object.keys(metadata).length}`, metadata };
        assert.equal(
          (await deliver(stripeEvent('payment_intent.payment_failed', stray))).status,
          200,
        );
      }
      const otherCurrency = { ...failure, id: 'pi_test_stray_eur', currency: 'eur' };
      assert.equal(
        (await deliver(stripeEvent('payment_intent.payment_failed', otherCurrency))).status,
        200,
      );
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(ofType('topup.failed').length, failedBefore + 1);
      assert.equal((await settings()).last_failure?.message, 'Your card has insufficient funds.');
      assert.equal((await balance()) <= before, true, 'nothing was credited');
    });

    test('a key that reaches its monthly cap sends key.cap_reached once', async () => {
      const usage = (await (await net.api('/v1/usage')).json()) as {
        totals: { bytes_up: number; bytes_down: number };
      };
      const cap = usage.totals.bytes_up + usage.totals.bytes_down + 300_000;
      const res = await net.api(`/v1/keys/${net.key.id}`, {
        method: 'PATCH',
        body: JSON.stringify({ monthly_byte_cap: cap }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      await download('/stream/1000000');
      const [capped] = await receiver.waitFor(1, (got) => got.event.type === 'key.cap_reached');
      const data = (capped?.event.data ?? {}) as { key_id: string; monthly_byte_cap: number };
      assert.equal(data.key_id, net.key.id);
      assert.equal(data.monthly_byte_cap, cap);
      // Refused and more flushes later: still the one event this month.
      await download('/bytes/1000');
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(ofType('key.cap_reached').length, 1);
    });

    test('bad auto top-up settings are refused with invalid_request and change nothing', async () => {
      const before = await settings();
      for (const bad of [
        { amount: '4.99' },
        { amount: '10000.01' },
        { amount: '25.001' },
        { amount: 'lots' },
        { threshold: '-1' },
        { threshold: '1e3' },
        { low_balance_threshold: '10000.5' },
        { enabled: 'yes' },
        { surprise: true },
      ]) {
        const res = await net.api('/v1/billing/auto-topup', {
          method: 'PUT',
          body: JSON.stringify(bad),
        });
        assert.equal(res.status, 400, JSON.stringify(bad));
        const body = (await res.json()) as { error: { code: string } };
        assert.equal(body.error.code, 'invalid_request', JSON.stringify(bad));
      }
      assert.deepEqual(await settings(), before);
    });

    test('npm run admin -- audit finds the ledger clean', async () => {
      assert.equal(await net.server.stop('SIGTERM'), 0);
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'src/admin/main.ts', 'audit'],
        { cwd: SERVER_DIR, env: { PATH: process.env.PATH, ...store.env } },
      );
      assert.match(stdout, /^audit: clean /);
    });
  });
}
