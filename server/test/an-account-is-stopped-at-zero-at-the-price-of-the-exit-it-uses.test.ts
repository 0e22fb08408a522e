/**
 * A balance is money, spent at the price of the exit each byte leaves through: the same
 * credit buys eight times the bytes through a datacenter exit (0.50 per GB by default)
 * as through a residential one (4.00), and whichever exits an account uses, one at a
 * time, both at once or one after the other on a keep-alive connection, it is stopped at
 * zero: never below minus the price of the documented overshoot (under 144 KiB per
 * connection, server/src/gateway/allowance.ts). What it was charged is checked against
 * its usage rows, each priced at its exit's type. Real server, real agents of both types.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { signedInApi } from './support/server-process.ts';

/** Micro-units per GB at the default prices. */
const RESIDENTIAL = 4_000_000;
const DATACENTER = 500_000;
const CREDIT = '0.02';
const CREDIT_MICRO = 20_000;
/** What the credit buys at each price. */
const RESIDENTIAL_BYTES = 5_000_000;
const DATACENTER_BYTES = 40_000_000;
/** The documented overshoot of one connection, in bytes. */
const BOUND_PER_CONNECTION = 144 * 1024;
/** One socket read: what a connection may leave unused of its last grant. */
const LAST_CHUNK = 64 * 1024;
/** A meter push (1 s) and a flush, with room. */
const SETTLED_MS = 2_000;
const DOWNLOAD = 100_000_000;

type Api = (pathname: string, init?: RequestInit) => Promise<Response>;
interface Customer {
  api: Api;
  key: { id: string; secret: string };
}

const priceOf = (bytes: number, microPerGb: number) => (bytes * microPerGb) / 1e9;

/**
 * The credit was used up: what is left is at most the price of what the cut discarded,
 * bytes the allowance let through that were still in the socket's buffer when it was
 * reset, never written, so never metered nor billed (one socket read at most).
 */
function assertUsedUp(balance: number, microPerGb: number): void {
  const unwritten = priceOf(LAST_CHUNK, microPerGb);
  assert.ok(balance <= unwritten, `balance ${balance}: the credit was not used up`);
}

describe('an account is stopped at zero at the price of the exit it uses', () => {
  let net: ProxyNetwork;
  let customers = 0;
  before(async () => {
    net = await startProxyNetwork(
      [
        { ip: '127.0.0.12', country: 'de', type: 'residential' },
        { ip: '127.0.0.13', country: 'fr', type: 'datacenter' },
      ],
      { TRIAL_CREDIT: CREDIT, USAGE_FLUSH_INTERVAL_MS: '500' },
    );
  });
  after(() => net?.close());

  /** A new account with the trial credit and a key. */
  const customer = async (): Promise<Customer> => {
    customers += 1;
    const api = await signedInApi(
      net.ports.api,
      `exit-price-${customers}-${Date.now()}@example.com`,
    );
    const created = await api('/v1/keys', { method: 'POST', body: '{}' });
    assert.equal(created.status, 201);
    return { api, key: (await created.json()) as { id: string; secret: string } };
  };
  const authority = () => `127.0.0.1:${net.targetPort}`;
  const auth = (who: Customer, country: string) =>
    `Proxy-Authorization: Basic ${Buffer.from(`${who.key.id}-country-${country}:${who.key.secret}`).toString('base64')}`;

  /** An endless CONNECT download through the exit of `country`; the bytes moved both ways when it was cut. */
  const tunnelUntilCut = async (who: Customer, country: string): Promise<number> => {
    const socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(
      `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\n${auth(who, country)}\r\n\r\n` +
        `GET /stream/${DOWNLOAD} HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
    );
    return untilClosed(socket);
  };

  /**
   * The account's balance once every byte is flushed, and what its usage rows cost: per
   * row (one key, one exit per country, an hour) its bytes at its exit's price, rounded down.
   */
  const settled = async (who: Customer, atLeastBytes: number) => {
    let balance = Number.NaN;
    let charged = 0;
    let bytes = 0;
    const byCountry: Record<string, number> = {};
    // What the gateway's meter still held reaches the database within a push and a flush:
    // figures that stay put for SETTLED_MS are the whole of it.
    let last = '';
    let since = performance.now();
    await eventually(
      async () => {
        const me = (await (await who.api('/v1/me')).json()) as {
          account: { balance: { amount_micro: number } };
        };
        balance = me.account.balance.amount_micro;
        charged = 0;
        bytes = 0;
        for (const [country, price] of [
          ['de', RESIDENTIAL],
          ['fr', DATACENTER],
        ] as const) {
          const report = (await (
            await who.api(`/v1/usage?granularity=hour&country=${country}`)
          ).json()) as { items: Array<{ bytes_up: number; bytes_down: number }> };
          byCountry[country] = 0;
          for (const row of report.items) {
            const rowBytes = row.bytes_up + row.bytes_down;
            byCountry[country] += rowBytes;
            bytes += rowBytes;
            charged += Math.floor(priceOf(rowBytes, price));
          }
        }
        const now = `${balance}/${bytes}`;
        if (now !== last) {
          last = now;
          since = performance.now();
        }
        return (
          bytes >= atLeastBytes &&
          balance === CREDIT_MICRO - charged &&
          performance.now() - since >= SETTLED_MS
        );
      },
      20_000,
      'the balance to show every byte metered, at its exit price',
    ).catch(() => assert.fail(`balance ${balance}, charged ${charged} for ${bytes} bytes`));
    return { balance, charged, byCountry };
  };

  test('through a residential exit the credit buys 5 MB, then the tunnel is cut', async () => {
    const who = await customer();
    const moved = await tunnelUntilCut(who, 'de');
    assert.ok(moved <= RESIDENTIAL_BYTES + BOUND_PER_CONNECTION, `moved ${moved} bytes`);
    const { balance, byCountry } = await settled(who, moved);
    // Billed, not received: a reset discards what the kernel held for the client.
    const billed = byCountry.de ?? 0;
    assert.ok(billed >= RESIDENTIAL_BYTES - LAST_CHUNK, `cut after ${billed} bytes, early`);
    assertUsedUp(balance, RESIDENTIAL);
    const bound = priceOf(BOUND_PER_CONNECTION, RESIDENTIAL);
    assert.ok(balance >= -bound, `balance ${balance} is below minus ${bound}`);
  });

  test('through a datacenter exit the same credit buys eight times the bytes', async () => {
    const who = await customer();
    const moved = await tunnelUntilCut(who, 'fr');
    assert.ok(moved <= DATACENTER_BYTES + BOUND_PER_CONNECTION, `moved ${moved} bytes`);
    const { balance, byCountry } = await settled(who, moved);
    const billed = byCountry.fr ?? 0;
    assert.ok(billed >= DATACENTER_BYTES - LAST_CHUNK, `cut after ${billed} bytes, early`);
    assert.equal(byCountry.de, 0);
    assertUsedUp(balance, DATACENTER);
    const bound = priceOf(BOUND_PER_CONNECTION, DATACENTER);
    assert.ok(balance >= -bound, `balance ${balance} is below minus ${bound}`);
  });

  test('one balance spent through both exits at once stops at zero', async () => {
    const who = await customer();
    const moved = await Promise.all([
      tunnelUntilCut(who, 'de'),
      tunnelUntilCut(who, 'fr'),
      tunnelUntilCut(who, 'de'),
      tunnelUntilCut(who, 'fr'),
    ]);
    const { balance, byCountry } = await settled(
      who,
      moved.reduce((sum, bytes) => sum + bytes, 0),
    );
    assert.ok((byCountry.de ?? 0) > 0 && (byCountry.fr ?? 0) > 0, 'both exits carried bytes');
    assertUsedUp(balance, RESIDENTIAL);
    const bound = 2 * priceOf(BOUND_PER_CONNECTION, RESIDENTIAL + DATACENTER);
    assert.ok(balance >= -bound, `balance ${balance} is below minus ${bound}`);
  });

  test('a keep-alive connection pays each request at the price of its own exit', async () => {
    const who = await customer();
    const socket = connect(net.ports.proxy, '127.0.0.1');
    await once(socket, 'connect');
    const closed = untilClosed(socket);
    // 10 MB through the datacenter exit costs a quarter of the credit...
    const first = 10_000_000;
    // The whole answer before the next request, so that the two are not pipelined.
    const answered = new Promise<void>((resolve) => {
      let head = '';
      let body = -1;
      const onData = (chunk: Buffer) => {
        if (body < 0) {
          head += chunk.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end >= 0) body = head.length - end - 4;
        } else {
          body += chunk.length;
        }
        if (body >= first) {
          socket.off('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
    });
    socket.write(
      `GET http://${authority()}/bytes/${first} HTTP/1.1\r\nHost: ${authority()}\r\n${auth(who, 'fr')}\r\n\r\n`,
    );
    await answered;
    // ...and the rest buys the residential exit three quarters of 5 MB, not of 40 MB.
    socket.write(
      `GET http://${authority()}/stream/${DOWNLOAD} HTTP/1.1\r\nHost: ${authority()}\r\n${auth(who, 'de')}\r\n\r\n`,
    );
    const moved = await closed;
    const { balance, byCountry } = await settled(who, moved);
    const residential = byCountry.de ?? 0;
    assert.ok(
      residential <= (3 * RESIDENTIAL_BYTES) / 4 + BOUND_PER_CONNECTION,
      `${residential} bytes through the residential exit`,
    );
    assertUsedUp(balance, RESIDENTIAL);
    const bound = priceOf(BOUND_PER_CONNECTION, RESIDENTIAL);
    assert.ok(balance >= -bound, `balance ${balance} is below minus ${bound}`);
  });
});

/** Reads until the gateway closes (a cut is a reset); the bytes the socket moved both ways. */
function untilClosed(socket: Socket): Promise<number> {
  socket.on('error', () => {});
  socket.resume();
  return new Promise((resolve) =>
    socket.once('close', () => resolve(socket.bytesRead + socket.bytesWritten)),
  );
}
