/**
 * The whole money journey, end to end, against the real server with real agents of two
 * exit types and the real `stripe` library talking to a local stand-in: a customer signs
 * up with no trial credit, buys credit by card, spends it through a residential exit
 * (4.00 per GB) and a datacenter exit (0.50), each usage row charged at its exit's price;
 * is stopped at zero with quota_exhausted; is topped up off-session with the card the
 * checkout saved, and traffic flows again. The operator who runs both exits earned each
 * row at the operator's rate (0.40 and 0.05 per GB), is paid that in whole cents through
 * Stripe Connect, and the audit of the ledger is clean. On the embedded database, and on
 * PostgreSQL with Redis when DATABASE_URL and REDIS_URL are set.
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
import { Redis } from 'ioredis';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange, exchangeText } from './support/raw-exchange.ts';
import { SERVER_DIR, type SignedInApi, signedInApi } from './support/server-process.ts';
import {
  deliverStripeEvent,
  paid,
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
} from './support/stripe-stand-in.ts';

const run = promisify(execFile);

const WEBHOOK_SECRET = 'whsec_standin_secret';
/** Per GB, in micro-units: what customers pay and operators earn, by exit type (the defaults). */
const PRICE = { residential: 4_000_000, datacenter: 500_000 } as const;
const EARNING = { residential: 400_000, datacenter: 50_000 } as const;
/** The exit of each type, by the country it announces. */
const COUNTRY = { residential: 'de', datacenter: 'fr' } as const;
/** The smallest checkout (5.00), in micro-units: it buys 1.25 GB through the residential exit. */
const BOUGHT = 5_000_000;
const TOPPED_UP = 5_000_000;
/** The documented overshoot of one connection (server/src/gateway/allowance.ts). */
const BOUND_PER_CONNECTION = 144 * 1024;
/** One socket read: what a cut connection may leave unused of its last grant. */
const LAST_CHUNK = 64 * 1024;
/** Micro-units per cent: Stripe moves whole minor units. */
const MICRO_PER_CENT = 10_000;
/** More than the credit buys at any price: the download only ends when it is cut. */
const ENDLESS = 20_000_000_000;
/** 1.25 GB through the gateway, an agent and the hub on a busy two-core machine. */
const SPEND_TO_ZERO_MS = 120_000;

type ExitType = keyof typeof PRICE;
const EXIT_TYPES: ExitType[] = ['residential', 'datacenter'];

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
    name: 'PostgreSQL and Redis',
    skip: needs('DATABASE_URL', 'REDIS_URL'),
    async setUp(dir) {
      const scratch = await createScratchDatabase(required('DATABASE_URL'));
      // A Redis database of its own: servers of other tests sharing the same Redis would
      // otherwise seal and apply this server's usage batches against their own database.
      const redis = new URL(required('REDIS_URL'));
      redis.pathname = `/${1 + Math.floor(Math.random() * 15)}`;
      return {
        env: {
          DATA_DIR: path.join(dir, 'data'),
          DATABASE_URL: scratch.url,
          REDIS_URL: redis.toString(),
          // With DATABASE_URL set, declared locations are not trusted by default.
          TRUST_DECLARED_LOCATION: 'true',
        },
        async dispose() {
          await scratch.drop();
          const client = new Redis(redis.toString());
          try {
            let cursor = '0';
            do {
              const [next, keys] = await client.scan(cursor, 'MATCH', 'ipcola:*', 'COUNT', 500);
              if (keys.length > 0) await client.del(...keys);
              cursor = next;
            } while (cursor !== '0');
          } finally {
            client.disconnect();
          }
        },
      };
    },
  },
];

interface Money {
  currency: string;
  amount_micro: number;
  amount: string;
}
interface LedgerLine {
  kind: string;
  amount: Money;
  memo: string;
  receipt_url: string | null;
}
interface UsageRow {
  bytes_up: number;
  bytes_down: number;
}
interface NodeView {
  id: string;
  type: string;
  bytes_carried: number;
  earnings: Money;
}
interface PayoutView {
  id: string;
  amount: Money;
  status: string;
  stripe_transfer_id: string | null;
}
interface PayoutAccountView {
  stripe_account_id: string | null;
  owed: Money;
  held: Money;
  available: Money;
}

const json = async <T>(res: Response | Promise<Response>): Promise<T> =>
  (await (await res).json()) as T;

/** floor(bytes × price / 10^9): what one usage row costs or earns, as the flusher prices it. */
const priced = (bytes: number, microPerGb: number) =>
  Math.floor((bytes * microPerGb) / 1_000_000_000);

/** The value of one sample line, e.g. `ipcola_proxy_bytes_total{direction="up"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Fails with `what` if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

for (const mode of modes) {
  describe(`a customer pays, spends at two prices, tops up, and an operator is paid, on ${mode.name}`, {
    skip: mode.skip,
  }, () => {
    let dir: string;
    let store: Store;
    let stripe: StripeStandIn;
    let net: ProxyNetwork;
    /** The customer: signed up through the API, with a proxy key. */
    let customer: SignedInApi;
    let customerId: string;
    let key: { id: string; secret: string };
    /** What the customer bought so far, in micro-units. */
    let credited = 0;

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ipcola-journey-'));
      store = await mode.setUp(dir);
      stripe = await startStripeStandIn();
      // The nodes are registered by the network's own account: that is the operator.
      net = await startProxyNetwork(
        [
          { ip: '127.0.0.12', country: COUNTRY.residential, type: 'residential' },
          { ip: '127.0.0.13', country: COUNTRY.datacenter, type: 'datacenter' },
        ],
        {
          ...store.env,
          TRIAL_CREDIT: '0',
          USAGE_FLUSH_INTERVAL_MS: '300',
          STRIPE_SECRET_KEY: 'sk_test_standin',
          STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
          STRIPE_API_URL: stripe.url,
          PORTAL_URL: 'https://portal.example.test/billing',
          // The earnings are minutes old and under a dollar: payable at once.
          PAYOUT_HOLD_DAYS: '0',
          PAYOUT_MINIMUM: '0.01',
        },
      );
    });
    after(async () => {
      await net?.close();
      await stripe?.close();
      await store?.dispose();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const authority = () => `127.0.0.1:${net.targetPort}`;
    const connectHead = (type: ExitType) => {
      const user = `${key.id}-country-${COUNTRY[type]}`;
      const basic = Buffer.from(`${user}:${key.secret}`).toString('base64');
      return `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`;
    };
    /** `size` bytes from the target through a CONNECT tunnel to the exit of `type`: the whole answer. */
    const fetchThrough = async (type: ExitType, size: number): Promise<string> =>
      (
        await exchange(
          net.ports.proxy,
          `${connectHead(type)}GET /bytes/${size} HTTP/1.1\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`,
        )
      ).toString('latin1');
    /**
     * fetchThrough once the gateway sees the credit: it reuses an account's standing read
     * from the database for up to a second (two limit checks, gateway/index.ts), so a
     * connection just after a top-up may still be refused on the balance read before it.
     */
    const fetchOnceCredited = async (type: ExitType, size: number): Promise<string> => {
      let answer = '';
      await eventually(
        async () => {
          answer = await fetchThrough(type, size);
          return !/^HTTP\/1\.1 402 /.test(answer);
        },
        5_000,
        'the gateway to see the new balance',
      ).catch(() => assert.fail(`still refused: ${answer.slice(0, 200)}`));
      return answer;
    };
    const assertCarried = (answer: string, size: number) => {
      assert.match(answer, /^HTTP\/1\.1 200 /, answer.slice(0, 200));
      const inner = answer.indexOf('HTTP/1.1 200 OK', 1);
      assert.ok(inner > 0, `no answer from the target: ${answer.slice(0, 300)}`);
      assert.ok(answer.endsWith(`\r\n\r\n${'a'.repeat(size)}`), 'the whole body came through');
    };

    const balance = async () =>
      (await json<{ balance: Money }>(customer('/v1/billing'))).balance.amount_micro;
    const ledger = async () =>
      (await json<{ items: LedgerLine[] }>(customer('/v1/billing/ledger'))).items;
    const rows = async (type: ExitType) =>
      (
        await json<{ items: UsageRow[] }>(
          customer(`/v1/usage?granularity=hour&country=${COUNTRY[type]}`),
        )
      ).items.map((row) => row.bytes_up + row.bytes_down);

    /**
     * Waits until every byte the gateway recorded is in the database: the byte counters of
     * /metrics (recorded when the meter records; only this customer moves bytes) equal the
     * customer's flushed usage, with no tunnel open. Then answers the usage rows by exit
     * type and what they cost, row by row at their exit's price.
     */
    const settled = async () => {
      let seen = '';
      await eventually(
        async () => {
          const metrics = await (await fetch(`http://127.0.0.1:${net.ports.api}/metrics`)).text();
          const usage = await json<{ totals: { bytes_up: number; bytes_down: number } }>(
            customer('/v1/usage'),
          );
          const up = sample(metrics, 'ipcola_proxy_bytes_total{direction="up"}') ?? 0;
          const down = sample(metrics, 'ipcola_proxy_bytes_total{direction="down"}') ?? 0;
          const open = sample(metrics, 'ipcola_tunnels_open') ?? 0;
          seen = `metered ${up}/${down}, flushed ${usage.totals.bytes_up}/${usage.totals.bytes_down}, ${open} tunnels open`;
          return open === 0 && usage.totals.bytes_up === up && usage.totals.bytes_down === down;
        },
        20_000,
        'every metered byte to be flushed',
      ).catch((error: Error) => assert.fail(`${error.message}: ${seen}`));
      const byType = {} as Record<ExitType, number[]>;
      let charged = 0;
      for (const type of EXIT_TYPES) {
        byType[type] = await rows(type);
        for (const bytes of byType[type]) charged += priced(bytes, PRICE[type]);
      }
      return { byType, charged, balance: await balance() };
    };

    test('1. a customer signs up with nothing, buys 5.00 by card, and is credited exactly that once', async () => {
      customer = await signedInApi(net.ports.api, `journey-${Date.now()}@example.com`);
      customerId = (await json<{ account: { id: string } }>(customer('/v1/me'))).account.id;
      assert.equal(await balance(), 0, 'TRIAL_CREDIT=0 gives nothing');
      const created = await customer('/v1/keys', { method: 'POST', body: '{}' });
      assert.equal(created.status, 201);
      key = await json<{ id: string; secret: string }>(created);
      // Nothing to spend yet: refused before any exit is asked.
      assert.match(
        await exchangeText(net.ports.proxy, connectHead('residential')),
        /^HTTP\/1\.1 402 [\s\S]*X-IPCola-Error: quota_exhausted/i,
      );

      const res = await customer('/v1/billing/checkout', {
        method: 'POST',
        body: JSON.stringify({ amount: '5.00' }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const session = stripe.sessions.get((await json<{ id: string }>(res)).id);
      assert.ok(session, 'Stripe was asked for the session');
      assert.equal(session.amount_total, 500);
      assert.equal(session.metadata.account_id, customerId);
      const event = stripeEvent('checkout.session.completed', paid(session));
      const deliver = () => deliverStripeEvent(net.ports.api, event, WEBHOOK_SECRET);
      assert.equal((await deliver()).status, 200);
      // Stripe delivers at least once.
      assert.equal((await deliver()).status, 200);
      credited += BOUGHT;
      assert.equal(await balance(), BOUGHT);
      const topups = (await ledger()).filter((line) => line.kind === 'topup');
      assert.deepEqual(
        topups.map((line) => [line.amount.amount_micro, line.receipt_url]),
        [[BOUGHT, stripe.receiptOf(session.payment_intent)]],
      );
    });

    test('2. bytes through a residential and a datacenter exit are charged per usage row at 4.00 and 0.50 per GB', async () => {
      const sizes: Record<ExitType, number> = { residential: 3_000_000, datacenter: 7_000_000 };
      for (const type of EXIT_TYPES) {
        assertCarried(await fetchOnceCredited(type, sizes[type]), sizes[type]);
      }
      const { byType, charged, balance: left } = await settled();
      for (const type of EXIT_TYPES) {
        const bytes = byType[type].reduce((sum, row) => sum + row, 0);
        assert.ok(bytes > sizes[type], `${bytes} bytes metered through the ${type} exit`);
        // The headers are few: the exit's price, not the other's, made the charge.
        assert.ok(bytes < sizes[type] + 1_000, `${bytes} bytes through the ${type} exit`);
      }
      assert.ok(charged > 0);
      assert.equal(left, credited - charged);
      const usage = (await ledger()).filter((line) => line.kind === 'usage');
      assert.equal(
        usage.reduce((sum, line) => sum + line.amount.amount_micro, 0),
        -charged,
        'the ledger debits what the rows cost',
      );
    });

    test('3. spent to zero, a long download is cut and a new connection gets 402 quota_exhausted', async () => {
      const socket = connect(net.ports.proxy, '127.0.0.1');
      await once(socket, 'connect');
      socket.on('error', () => {});
      socket.resume();
      // The cut is a reset: an error, then the close.
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.write(
        `${connectHead('residential')}GET /stream/${ENDLESS} HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
      );
      await within(closed, SPEND_TO_ZERO_MS, 'the download to be cut at zero').finally(() =>
        socket.destroy(),
      );
      assert.ok(socket.bytesRead < ENDLESS, 'cut, not finished');

      const refused = await exchangeText(net.ports.proxy, connectHead('datacenter'));
      assert.match(refused, /^HTTP\/1\.1 402 [\s\S]*X-IPCola-Error: quota_exhausted/i);

      const { charged, balance: left } = await settled();
      assert.equal(left, credited - charged);
      // Used up: at most what the cut left unwritten in the socket's buffer...
      assert.ok(left <= (LAST_CHUNK * PRICE.residential) / 1e9, `balance ${left}: not used up`);
      // ...and never below minus the price of one connection's documented overshoot.
      const bound = (BOUND_PER_CONNECTION * PRICE.residential) / 1e9;
      assert.ok(left >= -bound, `balance ${left} is below minus ${bound}`);
    });

    test('4. auto top-up charges the card the checkout saved, and traffic flows again', async () => {
      const before = await balance();
      const settings = async (changes?: object) => {
        const res = await customer(
          '/v1/billing/auto-topup',
          changes ? { method: 'PUT', body: JSON.stringify(changes) } : {},
        );
        assert.equal(res.status, 200, await res.clone().text());
        return json<{ enabled: boolean; payment_method: { last4: string } | null }>(res);
      };
      assert.deepEqual((await settings()).payment_method, { brand: 'visa', last4: '4242' });
      // Saving arms it, and the balance is under the threshold already: charged now.
      const on = await settings({ enabled: true, threshold: '1.00', amount: '5.00' });
      assert.equal(on.enabled, true);
      const charges = stripe.requests.filter(
        (r) => r.method === 'POST' && r.path === '/v1/payment_intents',
      );
      assert.equal(charges.length, 1);
      assert.deepEqual(
        [charges[0]?.form.amount, charges[0]?.form.off_session, charges[0]?.form.payment_method],
        ['500', 'true', stripe.paymentMethod.id],
      );
      credited += TOPPED_UP;
      assert.equal(await balance(), before + TOPPED_UP);
      const [intent] = [...stripe.intents.values()];
      assert.ok(intent);
      const auto = (await ledger()).filter((line) => line.memo === 'auto top-up');
      assert.deepEqual(
        auto.map((line) => [line.kind, line.amount.amount_micro, line.receipt_url]),
        [['topup', TOPPED_UP, stripe.receiptOf(intent.id)]],
      );

      for (const type of EXIT_TYPES) assertCarried(await fetchOnceCredited(type, 100_000), 100_000);
    });

    test('5. the operator earned every usage row at 0.40 and 0.05 per GB', async () => {
      const { byType, charged, balance: left } = await settled();
      assert.equal(left, credited - charged);
      const nodes = (await json<{ items: NodeView[] }>(net.api('/v1/nodes'))).items;
      assert.equal(nodes.length, 2);
      for (const type of EXIT_TYPES) {
        const node = nodes.find((candidate) => candidate.type === type);
        assert.ok(node, `the ${type} node is the operator's`);
        const earned = byType[type].reduce((sum, bytes) => sum + priced(bytes, EARNING[type]), 0);
        assert.ok(earned > 0);
        assert.equal(node.earnings.amount_micro, earned, `earnings of the ${type} node`);
        assert.equal(
          node.bytes_carried,
          byType[type].reduce((sum, bytes) => sum + bytes, 0),
        );
      }
    });

    test('6. a payout pays the earnings in whole cents through Stripe Connect; the sub-cent rest stays owed', async () => {
      const nodes = (await json<{ items: NodeView[] }>(net.api('/v1/nodes'))).items;
      const earned = nodes.reduce((sum, node) => sum + node.earnings.amount_micro, 0);
      const payable = Math.floor(earned / MICRO_PER_CENT) * MICRO_PER_CENT;
      assert.ok(payable >= 10_000, `earned ${earned}`);

      const linked = await net.api('/v1/payouts/account', { method: 'POST' });
      assert.equal(linked.status, 201, await linked.clone().text());
      const { stripe_account_id: connected } = await json<{ stripe_account_id: string }>(linked);
      // The operator finishes Stripe's onboarding.
      const account = stripe.connectedAccounts.get(connected);
      assert.ok(account);
      account.details_submitted = true;
      account.payouts_enabled = true;
      const shown = await json<PayoutAccountView>(net.api('/v1/payouts/account'));
      assert.deepEqual(
        [shown.owed.amount_micro, shown.held.amount_micro, shown.available.amount_micro],
        [earned, 0, payable],
      );

      const res = await net.api('/v1/payouts', { method: 'POST', body: '{}' });
      assert.equal(res.status, 201, await res.clone().text());
      const payout = await json<PayoutView>(res);
      assert.equal(payout.status, 'paid');
      assert.equal(payout.amount.amount_micro, payable);
      const transfer = stripe.transfers.get(payout.stripe_transfer_id ?? '');
      assert.ok(transfer, 'Stripe made the transfer');
      assert.deepEqual(
        [transfer.amount, transfer.currency, transfer.destination],
        [payable / MICRO_PER_CENT, 'usd', connected],
      );
      const sent = stripe.requests.filter((r) => r.path === '/v1/transfers');
      assert.deepEqual(
        sent.map((r) => r.idempotencyKey),
        [payout.id],
      );

      const afterwards = await json<PayoutAccountView>(net.api('/v1/payouts/account'));
      assert.equal(afterwards.owed.amount_micro, earned - payable, 'the sub-cent rest stays owed');
      assert.equal(afterwards.available.amount_micro, 0);
      const nothing = await net.api('/v1/payouts', { method: 'POST', body: '{}' });
      assert.equal(nothing.status, 409);
      assert.equal(
        (await json<{ error: { code: string } }>(nothing)).error.code,
        'payout_below_minimum',
      );
    });

    test('7. npm run admin -- audit finds the ledger clean', async () => {
      assert.equal(await net.server.stop('SIGTERM'), 0);
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'src/admin/main.ts', 'audit'],
        { cwd: SERVER_DIR, env: { PATH: process.env.PATH, ...store.env } },
      );
      assert.match(stdout, /^audit: clean \(\d+ journal entries, 2 accounts\)\n$/);
    });
  });
}
