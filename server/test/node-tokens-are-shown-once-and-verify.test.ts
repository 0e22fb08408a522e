import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { type ControlApi, ENDPOINT, openControlApi, signUp } from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

for (const engine of databaseEngines) {
  describe(`exit nodes on ${engine.name}`, { skip: engine.skip }, () => {
    let api: ControlApi;
    let agent: ReturnType<typeof request.agent>;
    let csrf: string;
    let accountId: string;

    before(async () => {
      api = await openControlApi(engine);
      ({ agent, csrf, accountId } = await signUp(api.app, 'operator'));
    });
    after(() => api.close());

    test('a new node answers once with its token and the command that runs the agent', async () => {
      const res = await agent
        .post('/v1/nodes')
        .set('X-CSRF-Token', csrf)
        .send({ name: 'home router' })
        .expect(201);
      const node = res.body;
      assert.deepEqual(Object.keys(node).sort(), [
        'agent_command',
        'created_at',
        'id',
        'name',
        'token',
        'type',
      ]);
      assert.match(node.id, /^[a-z0-9]{12}$/);
      assert.equal(node.name, 'home router');
      assert.equal(node.type, 'residential');
      assert.match(node.token, new RegExp(`^${node.id}\\.[A-Za-z0-9]{43}$`));
      assert.equal(
        node.agent_command,
        `npm run agent -- --hub ${ENDPOINT.host}:${ENDPOINT.hubPort} --token ${node.token}`,
      );
    });

    test('a datacenter node carries its type, in the answer and in the command', async () => {
      const res = await agent
        .post('/v1/nodes')
        .set('X-CSRF-Token', csrf)
        .send({ type: 'datacenter' })
        .expect(201);
      assert.equal(res.body.type, 'datacenter');
      assert.match(res.body.agent_command, / --type datacenter$/);
    });

    test('the token is stored only as its HMAC; it verifies, a tampered one does not', async () => {
      const res = await agent.post('/v1/nodes').set('X-CSRF-Token', csrf).expect(201);
      const { id, token } = res.body as { id: string; token: string };
      const secret = token.slice(id.length + 1);
      const [row] = await api.db.query<Record<string, unknown>>(
        'SELECT * FROM nodes WHERE id = $1',
        [id],
      );
      assert.equal(row?.token_hash, createHmac('sha256', api.pepper).update(secret).digest('hex'));
      assert.ok(!JSON.stringify(row).includes(secret));

      assert.deepEqual(await api.accounts.verifyNodeToken(token), {
        id,
        accountId,
        name: '',
        type: 'residential',
      });
      const last = token.at(-1) === 'a' ? 'b' : 'a';
      for (const tampered of [
        `${token.slice(0, -1)}${last}`,
        `${token}x`,
        token.slice(0, -1),
        secret,
        `${id}.`,
        `.${secret}`,
        `zzzzzzzzzzzz.${secret}`,
        token.replace('.', ':'),
        '',
      ]) {
        assert.equal(await api.accounts.verifyNodeToken(tampered), null, tampered);
      }
    });

    test('a deleted node is not let in any more', async () => {
      const node = await api.accounts.registerNode(accountId, { name: 'retired' });
      assert.ok(await api.accounts.verifyNodeToken(node.token));
      await api.db.query('UPDATE nodes SET deleted_at = now() WHERE id = $1', [node.id]);
      assert.equal(await api.accounts.verifyNodeToken(node.token), null);
    });

    test('a bearer key may register nodes too', async () => {
      const key = await api.accounts.issueKey(accountId, { scopes: ['proxy', 'api'] });
      const res = await request(api.app)
        .post('/v1/nodes')
        .set('Authorization', `Bearer ${key.id}.${key.secret}`)
        .send({ type: 'mobile', name: 'phone' })
        .expect(201);
      assert.equal(res.body.type, 'mobile');
    });

    test('regions: counts by country, city and type, and nothing that names a node', async () => {
      await request(api.app).get('/v1/regions').expect(401);
      api.regions = [
        { country: 'us', city: 'new_york', type: 'residential', exits: 2, healthy: 2, asns: [] },
        { country: 'de', city: null, type: 'datacenter', exits: 5, healthy: 5, asns: [] },
        // What a careless provider might pass on: node ids and IPs must not leave.
        {
          country: 'de',
          city: 'berlin',
          type: 'residential',
          exits: 1,
          healthy: 1,
          asns: [],
          nodeId: 'abc123',
          ips: ['203.0.113.9'],
        } as never,
        { country: 'fr', city: 'paris', type: 'mobile', exits: 0, healthy: 0, asns: [] },
      ];
      const res = await agent.get('/v1/regions').expect(200);
      const counted = [
        { country: 'de', city: 'berlin', type: 'residential', exits: 1, healthy: 1, asns: [] },
        { country: 'de', city: null, type: 'datacenter', exits: 5, healthy: 5, asns: [] },
        { country: 'us', city: 'new_york', type: 'residential', exits: 2, healthy: 2, asns: [] },
      ];
      assert.deepEqual(res.body, { items: counted, data: counted, next_cursor: null });
      assert.doesNotMatch(res.text, /abc123|203\.0\.113/);
    });

    test('regions: pages follow the cursor to the end, and country and type filter', async () => {
      const cities = Array.from({ length: 7 }, (_, i) => `city_${i}`);
      api.regions = [
        ...cities.map((city) => ({
          country: 'us',
          city,
          type: 'residential' as const,
          exits: 1,
          healthy: 1,
          asns: [],
        })),
        { country: 'us', city: null, type: 'mobile', exits: 3, healthy: 3, asns: [] },
        { country: 'us', city: null, type: 'datacenter', exits: 4, healthy: 4, asns: [] },
        { country: 'de', city: 'berlin', type: 'datacenter', exits: 2, healthy: 2, asns: [] },
      ];
      const whole = await agent.get('/v1/regions').expect(200);
      assert.equal(whole.body.data.length, 10);
      assert.equal(whole.body.next_cursor, null);

      const seen: unknown[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: Record<string, string> = { limit: '3' };
        if (cursor) query.cursor = cursor;
        const page = await agent.get('/v1/regions').query(query).expect(200);
        assert.ok(page.body.data.length <= 3);
        seen.push(...page.body.data);
        cursor = page.body.next_cursor;
        pages += 1;
        assert.ok(pages <= 10, 'the cursor ends');
      } while (cursor !== null);
      assert.equal(pages, 4);
      assert.deepEqual(seen, whole.body.data, 'every region once, in order');

      // A region that went offline between pages does not derail the next one.
      const first = await agent.get('/v1/regions').query({ limit: '2' }).expect(200);
      api.regions = api.regions.filter((region) => region.city !== 'city_0');
      const next = await agent
        .get('/v1/regions')
        .query({ limit: '2', cursor: first.body.next_cursor })
        .expect(200);
      assert.deepEqual(
        next.body.data.map((region: { city: string }) => region.city),
        ['city_1', 'city_2'],
      );

      const us = await agent.get('/v1/regions').query({ country: 'US', type: 'datacenter' });
      const datacenters = [
        { country: 'us', city: null, type: 'datacenter', exits: 4, healthy: 4, asns: [] },
      ];
      assert.deepEqual(us.body, { items: datacenters, data: datacenters, next_cursor: null });
      for (const query of [
        { country: 'usa' },
        { type: 'satellite' },
        { limit: '0' },
        { cursor: 'x' },
      ]) {
        const refused = await agent.get('/v1/regions').query(query).expect(400);
        assert.equal(refused.body.error.code, 'invalid_request', JSON.stringify(query));
      }
    });
  });
}
