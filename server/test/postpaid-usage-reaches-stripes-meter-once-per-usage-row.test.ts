/**
 * Postpaid accounts, end to end: real server, a real exit agent, the real `stripe`
 * library pointed at the stand-in. An account with nothing to spend is refused until
 * `npm run admin -- postpaid` gives it a credit limit; its traffic is then billed through
 * Stripe Billing's meter, one event per usage row with an identifier, and a send whose
 * answer was lost is sent again and not counted twice: the meter's sum is the ledger's
 * usage, and the paid invoice gives the balance back once. On the embedded database, and on PostgreSQL when DATABASE_URL is set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { SERVER_DIR } from './support/server-process.ts';
import {
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
  stripeSignature,
} from './support/stripe-stand-in.ts';

const run = promisify(execFile);
const WEBHOOK_SECRET = 'whsec_standin_secret';

const modes = [
  { name: 'embedded', skip: false as string | false, database: async () => null },
  {
    name: 'PostgreSQL',
    skip: needs('DATABASE_URL'),
    database: () => createScratchDatabase(required('DATABASE_URL')),
  },
];

for (const mode of modes) {
  describe(`postpaid usage on ${mode.name}`, { skip: mode.skip }, () => {
    let stripe: StripeStandIn;
    let scratch: { url: string; drop(): Promise<void> } | null;
    let net: ProxyNetwork;
    let accountId: string;

    before(async () => {
      stripe = await startStripeStandIn();
      scratch = await mode.database();
      net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
        // With DATABASE_URL set, declared locations are not trusted by default.
        ...(scratch ? { DATABASE_URL: scratch.url, TRUST_DECLARED_LOCATION: 'true' } : {}),
        TRIAL_CREDIT: '0',
        USAGE_FLUSH_INTERVAL_MS: '500',
        STRIPE_SECRET_KEY: 'sk_test_standin',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_URL: stripe.url,
      });
      accountId = ((await (await net.api('/v1/me')).json()) as { account: { id: string } }).account
        .id;
    });
    after(async () => {
      await net?.close();
      await stripe?.close();
      await scratch?.drop();
    });

    /** `npm run admin -- ...` on the network's database. */
    const admin = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'src/admin/main.ts', ...args], {
        cwd: SERVER_DIR,
        env: {
          PATH: process.env.PATH,
          DATA_DIR: net.dataDir,
          ...(scratch ? { DATABASE_URL: scratch.url } : {}),
        },
      });

    /** A plain-HTTP GET of `bytes` forwarded through the German exit: its status. */
    const download = (bytes: number) =>
      new Promise<number>((resolve, reject) => {
        const auth = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64');
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: net.ports.proxy,
            path: `${net.target}/stream/${bytes}`,
            agent: false,
            headers: {
              host: `127.0.0.1:${net.targetPort}`,
              'proxy-authorization': `Basic ${auth}`,
            },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end();
      });

    /** What the ledger's usage lines took from the balance, in micro-units. */
    const ledgerUsage = async (): Promise<number> => {
      const { items } = (await (await net.api('/v1/billing/ledger?limit=100')).json()) as {
        items: Array<{ kind: string; amount: { amount_micro: number } }>;
      };
      return -items
        .filter((line) => line.kind === 'usage')
        .reduce((sum, line) => sum + line.amount.amount_micro, 0);
    };
    const meterSum = () =>
      [...stripe.meterEvents.values()].reduce((sum, event) => sum + event.value, 0);

    test('nothing to spend is refused; postpaid, the account spends on its credit limit', async () => {
      assert.equal(await download(1_000), 402, 'a prepaid account with a zero balance');

      await net.restartServer('SIGTERM', async () => {
        const { stdout } = await admin('postpaid', accountId, 'on', '--credit-limit', '1.00');
        assert.equal(stdout, `${accountId}: postpaid, credit limit 1.00 usd\n`);
      });
      await eventually(
        async () => (await download(1_000).catch(() => 0)) === 200,
        30_000,
        'the exit to come back and the account to be let through',
      );
    });

    test('every usage row reaches the meter once, even when an answer is lost', async () => {
      // The first event reaches Stripe but its answer does not: it is sent again.
      stripe.loseMeterAnswers = 1;
      for (let i = 0; i < 3; i += 1) assert.equal(await download(1_000_000), 200);

      let usage = 0;
      await eventually(
        async () => {
          usage = await ledgerUsage();
          return usage > 3_000_000 * 4 * 1e-3 && meterSum() === usage;
        },
        30_000,
        'the meter to hold every usage row the ledger charged',
      ).catch(() => assert.fail(`ledger usage ${usage}, meter sum ${meterSum()}`));
      // Settled: nothing more arrives, and the balance owes exactly what was metered.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      assert.equal(meterSum(), await ledgerUsage());
      const me = (await (await net.api('/v1/billing')).json()) as {
        balance: { amount_micro: number };
      };
      assert.equal(me.balance.amount_micro, -meterSum());

      const events = [...stripe.meterEvents.values()];
      const sends = stripe.requests.filter((r) => r.path === '/v1/billing/meter_events');
      assert.ok(sends.length > events.length, 'the event whose answer was lost was sent again');
      const [customer] = new Set(events.map((event) => event.customer));
      assert.match(customer ?? '', /^cus_test_/);
      for (const event of events) {
        assert.equal(event.event_name, 'ipcola_usage');
        assert.equal(event.customer, customer);
        assert.match(
          event.identifier,
          new RegExp(`^[0-9a-z]+-[0-9a-f]{8}:${net.key.id}:.+:de:\\d+$`),
        );
        assert.ok(Number.isSafeInteger(event.value) && event.value > 0);
      }
    });

    test('the paid invoice gives back what it billed before tax, once', async () => {
      const balance = async () =>
        ((await (await net.api('/v1/billing')).json()) as { balance: { amount_micro: number } })
          .balance.amount_micro;
      const owed = -(await balance());
      const [event] = stripe.meterEvents.values();
      const cents = Math.ceil(owed / 10_000);
      const invoice = stripeEvent('invoice.paid', {
        id: 'in_test_postpaid',
        object: 'invoice',
        customer: event?.customer,
        currency: 'usd',
        status: 'paid',
        amount_paid: cents + 19,
        total_excluding_tax: cents,
        hosted_invoice_url: 'https://invoice.stripe.com/i/in_test_postpaid',
      });
      const payload = JSON.stringify(invoice);
      for (let i = 0; i < 2; i += 1) {
        const res = await fetch(`http://127.0.0.1:${net.ports.api}/v1/billing/stripe-webhook`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'stripe-signature': stripeSignature(payload, WEBHOOK_SECRET),
          },
          body: payload,
        });
        assert.equal(res.status, 200, await res.text());
      }
      assert.equal(await balance(), cents * 10_000 - owed);
    });

    test('npm run admin -- audit finds the ledger clean', async () => {
      assert.equal(await net.server.stop('SIGTERM'), 0);
      const { stdout } = await admin('audit');
      assert.match(stdout, /^audit: clean \(\d+ journal entries, \d+ accounts\)\n$/);
    });
  });
}
