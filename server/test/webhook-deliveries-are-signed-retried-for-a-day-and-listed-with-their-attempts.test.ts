import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type request from 'supertest';
import { USER_AGENT, verifyWebhookSignature, type Webhooks } from '../src/webhooks/index.ts';
import { type ControlApi, openControlApi, signUp } from './support/control-api.ts';
import { databaseEngines, eventually } from './support/engines.ts';
import {
  type Received,
  receiverAccepts,
  startWebhookReceiver,
  type WebhookReceiver,
} from './support/webhook-receiver.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

for (const engine of databaseEngines) {
  describe(`customer webhooks on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    let webhooks: Webhooks;
    let receiver: WebhookReceiver;
    let agent: ReturnType<typeof request.agent>;
    let csrf: string;
    let accountId: string;
    // The deliverer's clock runs with real time, shifted by this much.
    let clockShiftMs = 0;

    before(async () => {
      receiver = await startWebhookReceiver();
      api = await openControlApi(engine, {
        strictAnswers: true,
        webhooks: {
          allowTargets: ['127.0.0.1/32'],
          retry: { baseMs: 5 },
          pollIntervalMs: 20,
          clock: () => new Date(Date.now() + clockShiftMs),
        },
      });
      webhooks = api.webhooks as Webhooks;
      ({ agent, csrf, accountId } = await signUp(api.app));
    });
    after(async () => {
      await api.close();
      await receiver.close();
    });

    const register = async (path: string, events: string[]) => {
      const res = await agent
        .post('/v1/webhooks')
        .set('X-CSRF-Token', csrf)
        .send({ url: `${receiver.url}/${path}`, events })
        .expect(201);
      return res.body as { id: string; secret: string; url: string; events: string[] };
    };
    const deliveries = async (endpointId: string, query = '') =>
      (await agent.get(`/v1/webhooks/${endpointId}/deliveries${query}`).expect(200)).body;
    const settledDelivery = async (endpointId: string, status: string) => {
      let found: { status: string; attempts: { status_code: number | null; at: string }[] } = {
        status: '',
        attempts: [],
      };
      await eventually(
        async () => {
          [found] = (await deliveries(endpointId)).items;
          return found?.status === status;
        },
        10_000,
        `a ${status} delivery`,
      );
      return found;
    };
    const receivedFor = (eventId: string) => (got: Received) => got.event.id === eventId;

    test('a delivery arrives signed, and the receiver verifies it with its own HMAC code', async () => {
      const endpoint = await register('signed', ['balance.low']);
      assert.match(endpoint.secret, /^whsec_[A-Za-z0-9_-]{43}$/, 'shown once, at creation');
      const single = await agent.get(`/v1/webhooks/${endpoint.id}`).expect(200);
      assert.equal(single.body.secret, undefined, 'never shown again');

      const event = await webhooks.emit(accountId, 'balance.low', {
        balance: { currency: 'usd', amount_micro: 1000 },
      });
      const [got] = await receiver.waitFor(1, receivedFor(event.id));
      assert.ok(got);
      assert.equal(got.headers['user-agent'], USER_AGENT);
      assert.equal(got.headers['content-type'], 'application/json');
      const signature = got.headers['ipcola-signature'];
      assert.match(String(signature), /^t=\d+,v1=[0-9a-f]{64}$/);
      assert.ok(receiverAccepts(got.body, signature, endpoint.secret), 'the receiver accepts it');
      assert.ok(verifyWebhookSignature(got.body, String(signature), endpoint.secret));
      assert.deepEqual(got.event, {
        id: event.id,
        type: 'balance.low',
        created: event.created,
        account_id: accountId,
        data: { balance: { currency: 'usd', amount_micro: 1000 } },
      });
      assert.ok(Math.abs(event.created - Date.now() / 1000) < 5, 'created is unix seconds');

      const delivery = await settledDelivery(endpoint.id, 'succeeded');
      assert.equal(delivery.attempts.length, 1);
      assert.equal(delivery.attempts[0]?.status_code, 200);
    });

    test('a tampered body, another secret or an old timestamp fails verification', async () => {
      const endpoint = await register('tampered', ['balance.low']);
      const event = await webhooks.emit(accountId, 'balance.low', {
        balance: { currency: 'usd', amount_micro: 1000 },
      });
      const [got] = await receiver.waitFor(1, receivedFor(event.id));
      assert.ok(got);
      const header = String(got.headers['ipcola-signature']);
      const tampered = got.body.replace('1000', '9999');
      assert.notEqual(tampered, got.body);
      assert.equal(receiverAccepts(tampered, header, endpoint.secret), false);
      assert.equal(verifyWebhookSignature(tampered, header, endpoint.secret), false);
      assert.equal(verifyWebhookSignature(got.body, header, `${endpoint.secret}x`), false);

      // Six minutes later the same delivery is a replay: refused, though the MAC is right.
      const later = Math.floor(Date.now() / 1000) + 360;
      assert.equal(receiverAccepts(got.body, header, endpoint.secret, later), false);
      const laterDate = new Date(later * 1000);
      assert.equal(
        verifyWebhookSignature(got.body, header, endpoint.secret, { now: laterDate }),
        false,
      );
      // A correctly signed but old timestamp is refused too.
      const old = Math.floor(Date.now() / 1000) - 3600;
      const mac = createHmac('sha256', endpoint.secret).update(`${old}.${got.body}`).digest('hex');
      assert.equal(verifyWebhookSignature(got.body, `t=${old},v1=${mac}`, endpoint.secret), false);
      assert.equal(receiverAccepts(got.body, `t=${old},v1=${mac}`, endpoint.secret), false);
      assert.equal(verifyWebhookSignature(got.body, undefined, endpoint.secret), false);
    });

    test('a receiver failing twice gets the third attempt; the listing shows all three', async () => {
      const endpoint = await register('flaky', ['topup.failed']);
      const statuses = [500, 503];
      receiver.answer = (got) => (got.path.endsWith('/flaky') ? (statuses.shift() ?? 200) : 200);
      const event = await webhooks.emit(accountId, 'topup.failed', { amount: 500 });
      const got = await receiver.waitFor(3, receivedFor(event.id));
      assert.equal(new Set(got.map((one) => one.body)).size, 1, 'the same body every time');
      for (const one of got) {
        assert.ok(receiverAccepts(one.body, one.headers['ipcola-signature'], endpoint.secret));
      }

      const delivery = await settledDelivery(endpoint.id, 'succeeded');
      assert.deepEqual(
        delivery.attempts.map((attempt) => attempt.status_code),
        [500, 503, 200],
      );
      const times = delivery.attempts.map((attempt) => Date.parse(attempt.at));
      assert.deepEqual(times, [...times].sort(), 'oldest first');
      assert.equal(receiver.received.filter(receivedFor(event.id)).length, 3, 'sent once each');
    });

    test('retries stop a day after the first attempt, and the delivery is failed', async () => {
      const endpoint = await register('down', ['balance.exhausted']);
      receiver.answer = (got) => (got.path.endsWith('/down') ? 500 : 200);
      const event = await webhooks.emit(accountId, 'balance.exhausted', {});
      await receiver.waitFor(1, receivedFor(event.id));
      try {
        clockShiftMs = DAY_MS + 60 * 60 * 1000;
        const delivery = await settledDelivery(endpoint.id, 'failed');
        const listed = (await deliveries(endpoint.id)).items[0];
        assert.equal(listed.next_attempt_at, null, 'nothing more is due');
        assert.ok(delivery.attempts.every((attempt) => attempt.status_code === 500));
        const first = Date.parse(delivery.attempts[0]?.at ?? '');
        const last = Date.parse(delivery.attempts.at(-1)?.at ?? '');
        assert.ok(last - first >= DAY_MS, 'the last attempt is past the window');
        assert.ok(delivery.attempts.length >= 2);
        assert.equal(
          receiver.received.filter(receivedFor(event.id)).length,
          delivery.attempts.length,
          'every request the receiver got is listed',
        );
      } finally {
        clockShiftMs = 0;
      }
    });

    test('an event reaches subscribed, enabled endpoints, in the transaction that emits it', async () => {
      const capped = await register('capped', ['key.cap_reached']);
      const topups = await register('topups', ['topup.succeeded']);
      const off = await register('off', ['key.cap_reached']);
      await agent
        .patch(`/v1/webhooks/${off.id}`)
        .set('X-CSRF-Token', csrf)
        .send({ disabled: true })
        .expect(200);

      await assert.rejects(
        api.db.transaction(async (tx) => {
          await webhooks.emit(accountId, 'key.cap_reached', { key_id: 'rolledback' }, tx);
          throw new Error('the change is rolled back');
        }),
        /rolled back/,
      );
      const event = await api.db.transaction((tx) =>
        webhooks.emit(accountId, 'key.cap_reached', { key_id: 'committed' }, tx),
      );
      await receiver.waitFor(1, receivedFor(event.id));
      const listed = (await deliveries(capped.id)).items;
      assert.deepEqual(
        listed.map((delivery: { event_id: string }) => delivery.event_id),
        [event.id],
        'the rolled-back event was never owed',
      );
      assert.deepEqual((await deliveries(topups.id)).items, []);
      assert.deepEqual((await deliveries(off.id)).items, [], 'a disabled endpoint gets nothing');
    });

    test('a test event goes to its endpoint whatever it subscribes to; deliveries page newest first', async () => {
      const endpoint = await register('tested', ['topup.succeeded']);
      const first = await agent
        .post(`/v1/webhooks/${endpoint.id}/test`)
        .set('X-CSRF-Token', csrf)
        .expect(202);
      assert.equal(first.body.type, 'webhook.test');
      assert.equal(first.body.status, 'pending');
      assert.deepEqual(first.body.attempts, []);
      const second = await agent
        .post(`/v1/webhooks/${endpoint.id}/test`)
        .set('X-CSRF-Token', csrf)
        .expect(202);
      const [got] = await receiver.waitFor(1, receivedFor(first.body.event_id));
      assert.deepEqual(got?.event.data, { endpoint_id: endpoint.id });

      const page = await deliveries(endpoint.id, '?limit=1');
      assert.deepEqual(
        page.items.map((delivery: { id: string }) => delivery.id),
        [second.body.id],
      );
      const rest = await deliveries(endpoint.id, `?limit=1&cursor=${page.next_cursor}`);
      assert.deepEqual(
        rest.items.map((delivery: { id: string }) => delivery.id),
        [first.body.id],
      );
      assert.equal(rest.next_cursor, null);
    });

    test('PATCH changes the URL, events and description, and checks the URL again', async () => {
      const endpoint = await register('patched', ['topup.succeeded']);
      const res = await agent
        .patch(`/v1/webhooks/${endpoint.id}`)
        .set('X-CSRF-Token', csrf)
        .send({
          url: `${receiver.url}/moved`,
          events: ['topup.failed', 'topup.failed'],
          description: 'billing',
        })
        .expect(200);
      assert.equal(res.body.url, `${receiver.url}/moved`);
      assert.deepEqual(res.body.events, ['topup.failed'], 'a type named twice counts once');
      assert.equal(res.body.description, 'billing');
      const refused = await agent
        .patch(`/v1/webhooks/${endpoint.id}`)
        .set('X-CSRF-Token', csrf)
        .send({ url: 'https://10.0.0.1/hooks' })
        .expect(400);
      assert.equal(refused.body.error.code, 'invalid_request');
      const list = await agent.get('/v1/webhooks').expect(200);
      assert.ok(list.body.items.some((item: { id: string }) => item.id === endpoint.id));
      assert.equal(list.body.next_cursor, null);
    });

    test('a retried creation with the same Idempotency-Key answers the same endpoint and secret', async () => {
      const create = () =>
        agent
          .post('/v1/webhooks')
          .set('X-CSRF-Token', csrf)
          .set('Idempotency-Key', 'create-webhook-once')
          .send({ url: `${receiver.url}/once`, events: ['topup.succeeded'] })
          .expect(201);
      const first = await create();
      const again = await create().expect('idempotent-replayed', 'true');
      assert.deepEqual(again.body, first.body);
      const list = await agent.get('/v1/webhooks').expect(200);
      const made = list.body.items.filter((item: { url: string }) => item.url.endsWith('/once'));
      assert.equal(made.length, 1, 'made once');
    });

    test('another account cannot see, change, test or delete the endpoint', async () => {
      const endpoint = await register('private', ['balance.low']);
      const other = await signUp(api.app, 'other');
      const path = `/v1/webhooks/${endpoint.id}`;
      const notFound = (res: request.Response) => {
        assert.equal(res.status, 404);
        assert.equal(res.body.error.code, 'not_found');
      };
      notFound(await other.agent.get(path));
      notFound(await other.agent.get(`${path}/deliveries`));
      notFound(
        await other.agent.patch(path).set('X-CSRF-Token', other.csrf).send({ disabled: true }),
      );
      notFound(await other.agent.post(`${path}/test`).set('X-CSRF-Token', other.csrf));
      notFound(await other.agent.delete(path).set('X-CSRF-Token', other.csrf));
      const theirs = await other.agent.get('/v1/webhooks').expect(200);
      assert.deepEqual(theirs.body.items, []);

      await agent.get(path).expect(200);
      await agent.delete(path).set('X-CSRF-Token', csrf).expect(204);
      notFound(await agent.get(path));
    });
  });
}
