import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Webhooks } from '../src/webhooks/index.ts';
import { type ControlApi, openControlApi, type SignedIn, signUp } from './support/control-api.ts';
import { databaseEngines, eventually } from './support/engines.ts';
import { type FakeDns, fakeDns } from './support/fake-dns.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const PUBLIC = '93.184.216.34';

for (const engine of databaseEngines) {
  describe(`webhooks go only to public addresses on ${engine.name}`, { skip: engine.skip }, () => {
    let receiver: WebhookReceiver;
    let dns: FakeDns;
    // No allow-list: what a production server does.
    let strict: ControlApi;
    let customer: SignedIn;

    before(async () => {
      receiver = await startWebhookReceiver();
      dns = fakeDns({
        'hooks.example.test': PUBLIC,
        'internal.example.test': '10.0.0.1',
        'loopback.example.test': '127.0.0.1',
        'mixed.example.test': [PUBLIC, '192.168.1.10'],
        'rebind.example.test': PUBLIC,
      });
      strict = await openControlApi(engine, {
        strictAnswers: true,
        webhooks: { lookup: dns.lookup, retry: { baseMs: 5 }, pollIntervalMs: 20 },
      });
      customer = await signUp(strict.app);
    });
    after(async () => {
      await strict.close();
      await receiver.close();
    });

    const register = (url: string, events = ['balance.low']) =>
      customer.agent.post('/v1/webhooks').set('X-CSRF-Token', customer.csrf).send({ url, events });

    test('URLs that are not https to a public address are refused at registration', async () => {
      const refused = [
        'http://hooks.example.test/hooks',
        'https://user:password@hooks.example.test/hooks',
        'https://10.0.0.1/hooks',
        'https://127.0.0.1/hooks',
        'https://[::1]/hooks',
        'https://169.254.169.254/latest/meta-data',
        'https://2130706433/hooks',
        'https://internal.example.test/hooks',
        'https://loopback.example.test/hooks',
        'https://mixed.example.test/hooks',
        'https://hooks.example.test:25/hooks',
        'ftp://hooks.example.test/hooks',
        'not a url',
      ];
      for (const url of refused) {
        const res = await register(url);
        assert.equal(res.status, 400, url);
        assert.equal(res.body.error.code, 'invalid_request', url);
        assert.match(res.body.error.message, /^url: /, url);
      }
      const list = await customer.agent.get('/v1/webhooks').expect(200);
      assert.deepEqual(list.body.items, [], 'nothing was registered');
    });

    test('https to a public name is registered, and so is a name not in DNS yet', async () => {
      for (const url of [
        'https://hooks.example.test/hooks',
        'https://not-yet.example.test/hooks',
      ]) {
        const endpoint = (await register(url).expect(201)).body;
        // Deleted again: an event must never send the test suite to a real public address.
        await customer.agent
          .delete(`/v1/webhooks/${endpoint.id}`)
          .set('X-CSRF-Token', customer.csrf)
          .expect(204);
      }
    });

    test('a name that resolves to a private address at delivery is never contacted', async () => {
      const url = `https://rebind.example.test:${receiver.port}/hooks`;
      const endpoint = (await register(url, ['key.cap_reached']).expect(201)).body;
      // Public when registered; loopback, where the receiver listens, when delivered.
      dns.names.set('rebind.example.test', ['127.0.0.1']);
      const webhooks = strict.webhooks as Webhooks;
      await webhooks.emit(customer.accountId, 'key.cap_reached', {});
      let attempts: { status_code: number | null; error: string | null }[] = [];
      await eventually(
        async () => {
          const res = await customer.agent
            .get(`/v1/webhooks/${endpoint.id}/deliveries`)
            .expect(200);
          attempts = res.body.items[0]?.attempts ?? [];
          return attempts.length >= 2;
        },
        10_000,
        'two attempts',
      );
      for (const attempt of attempts) {
        assert.deepEqual(attempt, { ...attempt, status_code: null, error: 'target_forbidden' });
      }
      assert.equal(receiver.received.length, 0, 'no request reached the private address');
    });
  });

  describe(`the webhook allow-list on ${engine.name}`, { skip: engine.skip }, () => {
    let receiver: WebhookReceiver;
    let api: ControlApi;
    let customer: SignedIn;

    before(async () => {
      receiver = await startWebhookReceiver();
      api = await openControlApi(engine, {
        strictAnswers: true,
        webhooks: {
          allowTargets: ['127.0.0.1/32'],
          lookup: fakeDns({ 'receiver.example.test': '127.0.0.1', 'web.example.test': PUBLIC })
            .lookup,
          pollIntervalMs: 20,
        },
      });
      customer = await signUp(api.app);
    });
    after(async () => {
      await api.close();
      await receiver.close();
    });

    test('plain http goes to allow-listed addresses only, dialled at the address checked', async () => {
      const refused = await customer.agent
        .post('/v1/webhooks')
        .set('X-CSRF-Token', customer.csrf)
        .send({ url: 'http://web.example.test/hooks', events: ['topup.succeeded'] })
        .expect(400);
      assert.match(refused.body.error.message, /must be https/);

      const url = `http://receiver.example.test:${receiver.port}/hooks`;
      await customer.agent
        .post('/v1/webhooks')
        .set('X-CSRF-Token', customer.csrf)
        .send({ url, events: ['topup.succeeded'] })
        .expect(201);
      await (api.webhooks as Webhooks).emit(customer.accountId, 'topup.succeeded', {});
      const [got] = await receiver.waitFor(1);
      // The name was never looked up by the system resolver (.test does not resolve):
      // the socket went to the checked address, with the URL's name as Host.
      assert.equal(got?.headers.host, `receiver.example.test:${receiver.port}`);
    });
  });
}
