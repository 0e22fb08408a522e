/**
 * GET /v1/regions pages like every other list: `items` and `next_cursor`, with `data`
 * kept beside `items` for one release and marked deprecated in the document. The answers
 * are checked strictly against the OpenAPI document.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { parse as parseYaml } from 'yaml';
import { type ControlApi, openControlApi, signUp } from './support/control-api.ts';
import { databaseEngines } from './support/engines.ts';

const engine = databaseEngines[0];
assert.ok(engine, 'a database engine to run on');

describe('regions page with items', () => {
  let api: ControlApi;
  let agent: ReturnType<typeof request.agent>;

  before(async () => {
    api = await openControlApi(engine, { strictAnswers: true });
    ({ agent } = await signUp(api.app, 'regions'));
  });
  after(() => api.close());

  test('a page answers items and next_cursor, the same as keys, and still data', async () => {
    api.regions = ['de', 'fr', 'nl', 'us', 'jp'].map((country, i) => ({
      country,
      city: null,
      type: 'datacenter' as const,
      exits: i + 1,
      healthy: i + 1,
      asns: [{ asn: 64_500 + i, organization: null, exits: i + 1 }],
    }));
    const keys = await agent.get('/v1/keys').expect(200);
    const regionKeys = ['data', 'items', 'next_cursor'];
    assert.deepEqual(
      Object.keys(keys.body).sort(),
      regionKeys.filter((name) => name !== 'data'),
    );

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: Record<string, string> = { limit: '2' };
      if (cursor !== null) query.cursor = cursor;
      const page = await agent.get('/v1/regions').query(query).expect(200);
      assert.deepEqual(Object.keys(page.body).sort(), regionKeys);
      assert.ok(page.body.items.length <= 2);
      assert.deepEqual(page.body.data, page.body.items, 'data is the same page as items');
      seen.push(...page.body.items.map((region: { country: string }) => region.country));
      cursor = page.body.next_cursor;
      pages += 1;
      assert.ok(pages <= 5, 'the cursor ends');
    } while (cursor !== null);
    assert.equal(pages, 3);
    assert.deepEqual(seen, ['de', 'fr', 'jp', 'nl', 'us']);
  });

  test('the served document lists items and marks data deprecated', async () => {
    const served = await request(api.app).get('/openapi.yaml').expect(200);
    const document = parseYaml(served.text);
    const list = document.components.schemas.RegionList;
    assert.ok(list.required.includes('items'));
    assert.equal(list.properties.items.items.$ref, '#/components/schemas/Region');
    assert.equal(list.properties.data.deprecated, true);
  });
});
