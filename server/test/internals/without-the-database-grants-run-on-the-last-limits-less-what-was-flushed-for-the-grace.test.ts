/**
 * The allowance side of a PostgreSQL outage, on each hot-state engine: while the database
 * cannot be read, grants go on against the limits it last gave, lowered by what was
 * flushed since (another server that still reaches the database flushes usage out of
 * committed into a balance these limits never saw), and only for the grace. Past it, a
 * new connection gets service_unavailable, never quota_exhausted. The database
 * here is a standing reader that fails as node-postgres does when the server is gone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KeyStanding } from '../../src/accounts/index.ts';
import { createAllowances } from '../../src/gateway/allowance.ts';
import { allowanceBuckets } from '../../src/metering/index.ts';
import { type HotState, StoreUnavailableError } from '../../src/store/index.ts';
import { hotStateEngines } from '../support/engines.ts';

const GRACE_MS = 300_000;
/** The only price here: 4.00 per GB. */
const MICRO_PER_BYTE = 4_000_000 / 1e9;
const KEY = { id: 'key1', accountId: 'acct1' };
const STANDING: KeyStanding = {
  keyId: KEY.id,
  accountId: KEY.accountId,
  /** Buys 1,000,000 bytes at 4.00 per GB. */
  balanceMicro: 4_000,
  monthlyByteCap: null,
  monthBytes: 0,
  usable: true,
  secretRotatedAt: null,
  maxConcurrency: null,
  allowedCountries: null,
  clientAllowlist: null,
};

for (const engine of hotStateEngines) {
  describe(`without the database, on ${engine.name}`, { skip: engine.skip }, () => {
    let hot: HotState;
    let dispose: () => Promise<void>;
    let clock = 1_000_000;
    let databaseDown = false;
    const allowances = () =>
      createAllowances({
        ledger: hot.allowances,
        async standing() {
          if (databaseDown) {
            throw new StoreUnavailableError(
              'postgres',
              Object.assign(new Error('connect'), {
                code: 'ECONNREFUSED',
              }),
            );
          }
          return [STANDING];
        },
        chunkBytes: 65_536,
        prices: { customerRate: () => 4_000_000, highestCustomerRate: () => 4_000_000 },
        limitsTtlMs: 1_000,
        staleForMs: GRACE_MS,
        onError: () => {},
        now: () => clock,
      });

    before(async () => {
      ({ value: hot, dispose } = await engine.open());
    });
    after(() => dispose());

    test('grants go on against the last limits, less what was flushed since', async () => {
      databaseDown = false;
      const gateway = allowances();
      (await gateway.open(KEY)).close();
      databaseDown = true;
      clock += 2_000; // past the limits' cache: every grant now asks the database first
      // Usage metered and then flushed by another server, which still reaches the database:
      // it leaves committed, and the balance read before the outage does not know of it.
      const [account] = allowanceBuckets(KEY.id, KEY.accountId);
      await hot.allowances.adjust({ [account]: STANDING.balanceMicro / 2 });
      await hot.allowances.settle(`flushed-elsewhere-${engine.name}`, {
        [account]: STANDING.balanceMicro / 2,
      });
      // What the rest of the balance buys at 4.00 per GB, granted until it is used up.
      const room = STANDING.balanceMicro / 2 / MICRO_PER_BYTE;
      const open: Array<{ remaining: number; close(): void }> = [];
      for (let i = 0; i < 1_000; i++) {
        try {
          open.push(await gateway.open(KEY));
        } catch (error) {
          assert.equal((error as { code?: string }).code, 'quota_exhausted');
          break;
        }
      }
      const granted = open.reduce((sum, allowance) => sum + allowance.remaining, 0);
      for (const allowance of open) allowance.close();
      assert.ok(granted <= room, `${granted} bytes granted on a balance that buys ${room}`);
      assert.ok(granted > room - 65_536, `${granted} bytes granted of ${room}`);
    });

    test('grants stop once the last limits are older than the grace', async () => {
      databaseDown = false;
      const gateway = allowances();
      (await gateway.open(KEY)).close();
      databaseDown = true;
      clock += GRACE_MS - 1_000;
      (await gateway.open(KEY)).close();
      clock += 2_000;
      await assert.rejects(gateway.open(KEY), { code: 'service_unavailable' });
    });

    test('a key whose limits were never read is refused with service_unavailable', async () => {
      databaseDown = true;
      await assert.rejects(allowances().open(KEY), { code: 'service_unavailable' });
    });
  });
}
