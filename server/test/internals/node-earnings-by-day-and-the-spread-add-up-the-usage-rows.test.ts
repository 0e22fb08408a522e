/**
 * What operators and the admin see of earnings, from usage rows written here with exact
 * figures: GET /v1/nodes/{id}/earnings lists every UTC day of the range with the node's
 * bytes and earnings (another account's node is 404), and `npm run admin -- spread`
 * prints, per exit type, the bytes, the charges, the earnings and the spread per GB.
 * On every database engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runCommand } from '../../src/admin/commands.ts';
import { type ControlApi, openControlApi, signUp } from '../support/control-api.ts';
import { databaseEngines } from '../support/engines.ts';

const GB = 1_000_000_000;

for (const engine of databaseEngines) {
  describe(`earnings and spread on ${engine.name}`, { skip: engine.skip }, () => {
    let control: ControlApi;
    let operator: Awaited<ReturnType<typeof signUp>>;
    let nodeId: string;
    let mobileNodeId: string;

    const row = async (
      node: string,
      hour: string,
      exitType: string,
      bytes: number,
      prices: [number, number],
    ) => {
      const [key] = await control.db.query<{ id: string }>(
        'SELECT id FROM api_keys WHERE account_id = $1 LIMIT 1',
        [operator.accountId],
      );
      await control.db.query(
        `INSERT INTO usage_hourly (key_id, node_id, country, hour, exit_type, bytes_up, bytes_down,
           requests, customer_micro_per_gb, operator_micro_per_gb, charged_micro, earned_micro)
         VALUES ($1, $2, '', $3, $4, $5, $6, 1, $7, $8,
                 floor(($5::bigint + $6::bigint)::numeric * $7::bigint / 1000000000),
                 floor(($5::bigint + $6::bigint)::numeric * $8::bigint / 1000000000))`,
        [
          key?.id,
          node,
          hour,
          exitType,
          Math.floor(bytes / 4),
          bytes - Math.floor(bytes / 4),
          ...prices,
        ],
      );
    };

    before(async () => {
      control = await openControlApi(engine, { strictAnswers: true });
      operator = await signUp(control.app, 'operator');
      const csrf = { 'x-csrf-token': operator.csrf };
      await operator.agent.post('/v1/keys').set(csrf).send({ name: 'k' }).expect(201);
      nodeId = (await operator.agent.post('/v1/nodes').set(csrf).send({ name: 'a' }).expect(201))
        .body.id;
      mobileNodeId = (
        await operator.agent.post('/v1/nodes').set(csrf).send({ type: 'mobile' }).expect(201)
      ).body.id;
      // Residential at 4.00/0.40 per GB, mobile at 8.00/0.80.
      await row(nodeId, '2026-03-01T05:00:00Z', 'residential', 3 * GB, [4_000_000, 400_000]);
      await row(nodeId, '2026-03-01T23:00:00Z', 'residential', 1_234_567, [4_000_000, 400_000]);
      await row(nodeId, '2026-03-03T00:00:00Z', 'residential', GB / 2, [4_000_000, 400_000]);
      await row(nodeId, '2026-04-01T00:00:00Z', 'residential', GB, [4_000_000, 400_000]);
      await row(mobileNodeId, '2026-03-02T10:00:00Z', 'mobile', 2 * GB, [8_000_000, 800_000]);
    });
    after(() => control.close());

    test('earnings by day list every day of the range with the rows of each day', async () => {
      const res = await operator.agent
        .get(`/v1/nodes/${nodeId}/earnings?from=2026-03-01&to=2026-03-03`)
        .expect(200);
      const money = (micro: number, amount: string) => ({
        currency: 'eur',
        amount_micro: micro,
        amount,
      });
      assert.deepEqual(res.body, {
        node_id: nodeId,
        from: '2026-03-01',
        to: '2026-03-03',
        days: [
          // 3 GB earn 1.20; 1,234,567 bytes earn floor(493.8268) = 493 micro-units.
          {
            day: '2026-03-01',
            bytes: 3 * GB + 1_234_567,
            earnings: money(1_200_493, '1.200493'),
          },
          { day: '2026-03-02', bytes: 0, earnings: money(0, '0.00') },
          { day: '2026-03-03', bytes: GB / 2, earnings: money(200_000, '0.20') },
        ],
        total: { bytes: 3_501_234_567, earnings: money(1_400_493, '1.400493') },
      });
    });

    test('the default range is the last 30 days; ranges are checked; another account sees 404', async () => {
      const recent = await operator.agent.get(`/v1/nodes/${nodeId}/earnings`).expect(200);
      assert.equal(recent.body.days.length, 30);
      assert.equal(recent.body.to, new Date().toISOString().slice(0, 10));
      for (const query of [
        'from=2026-03-05&to=2026-03-01',
        'from=2025-01-01&to=2026-03-01',
        'from=2026-02-30',
        'from=March',
      ]) {
        await operator.agent.get(`/v1/nodes/${nodeId}/earnings?${query}`).expect(400);
      }
      const stranger = await signUp(control.app, 'stranger');
      await stranger.agent.get(`/v1/nodes/${nodeId}/earnings`).expect(404);
    });

    test('the spread per exit type is what customers paid less what operators earned, per GB', async () => {
      const lines: string[] = [];
      const code = await runCommand(['spread', '--from', '2026-03-01', '--to', '2026-03-31'], {
        database: control.db,
        currency: 'eur',
        print: (line) => lines.push(line),
      });
      assert.equal(code, 0);
      const cells = lines.slice(2).map((line) => line.trim().split(/\s+/));
      assert.equal(lines[0], 'spread 2026-03-01 to 2026-03-31 (eur)');
      // Residential: 3,501,234,567 bytes charged 14.004938 (floors per row: 12 + 0.004938
      // + 2), earned 1.400493; the spread 12.604445 is 3.60 per GB (rounded down).
      assert.deepEqual(cells, [
        ['residential', '3501234567', '14.004938', '1.400493', '12.604445', '3.60'],
        ['datacenter', '0', '0.00', '0.00', '0.00', '-'],
        ['mobile', '2000000000', '16.00', '1.60', '14.40', '7.20'],
        ['total', '5501234567', '30.004938', '3.000493', '27.004445', '4.908797'],
      ]);
    });
  });
}
