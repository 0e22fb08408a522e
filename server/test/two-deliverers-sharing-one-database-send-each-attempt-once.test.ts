import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAccounts, loadOrCreatePepper } from '../src/accounts/index.ts';
import { createSealingBox } from '../src/secrets/index.ts';
import { type Database, migrate, openPostgres } from '../src/store/index.ts';
import { createWebhooks, type Webhooks } from '../src/webhooks/index.ts';
import {
  createScratchDatabase,
  eventually,
  needs,
  quietLogger,
  required,
} from './support/engines.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const EVENTS = 40;

describe('two deliverers sharing one PostgreSQL database', { skip: needs('DATABASE_URL') }, () => {
  let scratch: { url: string; drop(): Promise<void> };
  let databases: Database[];
  let deliverers: Webhooks[];
  let receiver: WebhookReceiver;

  before(async () => {
    scratch = await createScratchDatabase(required('DATABASE_URL'));
    databases = [
      await openPostgres(scratch.url, quietLogger),
      await openPostgres(scratch.url, quietLogger),
    ];
    await migrate(databases[0] as Database);
    receiver = await startWebhookReceiver();
    const pepper = await loadOrCreatePepper(databases[0] as Database);
    // Each server derives the same sealing key from the shared pepper.
    deliverers = databases.map((database) =>
      createWebhooks({
        database,
        box: createSealingBox(
          createAccounts(database, {
            pepper,
            trialCredit: { currency: 'usd', micro: 0 },
          }).deriveSecret('webhook secrets'),
        ),
        allowTargets: ['127.0.0.1/32'],
        retry: { baseMs: 1 },
        pollIntervalMs: 5,
        logger: quietLogger,
      }),
    );
  });
  after(async () => {
    await Promise.all(deliverers.map((deliverer) => deliverer.close()));
    await Promise.all(databases.map((database) => database.close()));
    await receiver.close();
    await scratch.drop();
  });

  test('each attempt is sent once, though both claim from the same deliveries', async () => {
    const [first, second] = deliverers as [Webhooks, Webhooks];
    const accounts = createAccounts(databases[0] as Database, {
      pepper: await loadOrCreatePepper(databases[0] as Database),
      trialCredit: { currency: 'usd', micro: 0 },
    });
    const { account } = await accounts.signup('two@example.com', 'a long enough password');
    await first.endpoints.create(account.id, {
      url: `${receiver.url}/a`,
      events: ['balance.low'],
    });
    await second.endpoints.create(account.id, {
      url: `${receiver.url}/b`,
      events: ['balance.low'],
    });
    // Every event's first attempt fails, at each endpoint: each is owed exactly two.
    const seen = new Set<string>();
    receiver.answer = (got) => {
      const key = `${got.path} ${got.event.id}`;
      if (seen.has(key)) return 200;
      seen.add(key);
      return 500;
    };
    for (const deliverer of deliverers) deliverer.start();
    const emitted = await Promise.all(
      Array.from({ length: EVENTS }, (_, i) =>
        (i % 2 ? first : second).emit(account.id, 'balance.low', { n: i }),
      ),
    );

    await receiver.waitFor(EVENTS * 2 * 2);
    const database = databases[0] as Database;
    await eventually(
      async () => {
        const [row] = await database.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = 'succeeded'`,
        );
        return row?.n === EVENTS * 2;
      },
      10_000,
      'every delivery to succeed',
    );
    const counts = new Map<string, number>();
    for (const got of receiver.received) {
      const key = `${got.path} ${got.event.id}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    assert.equal(counts.size, EVENTS * 2, 'every event reached both endpoints');
    assert.ok(
      [...counts.values()].every((count) => count === 2),
      'each delivery was sent twice: its failed attempt and its retry, never more',
    );
    assert.deepEqual(
      new Set(receiver.received.map((got) => got.event.id)),
      new Set(emitted.map((event) => event.id)),
    );
    const [attempts] = await database.query<{ n: number; failed: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE status_code = 500)::int AS failed
       FROM webhook_attempts`,
    );
    assert.deepEqual(attempts, { n: EVENTS * 4, failed: EVENTS * 2 });
  });
});
