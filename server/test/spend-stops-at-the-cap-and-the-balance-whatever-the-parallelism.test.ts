/**
 * Spend is bounded in bytes, not in time: 20 parallel downloads of 100 MB each, over
 * HTTP forwarding, CONNECT and SOCKS5, move at most the key's 5 MB cap plus the
 * documented overshoot (server/src/gateway/allowance.ts: under 144 KiB per connection),
 * and an account with the price of 5 MB of credit driven by 60 parallel downloads at once
 * never goes below minus the price of that bound. Every cut is a reset. Real server, real agent, raw sockets that
 * count every byte they move both ways, as the gateway meters them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SocksClient } from 'socks';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const MB = 1_000_000;
const CAP = 5 * MB;
/** The default residential price per GB, in micro-units: the exit's (an agent's default type). */
const PRICE = 4_000_000;
/** Credit that buys CAP bytes at PRICE. */
const CREDIT = '0.02';
const CREDIT_MICRO = 20_000;
const PARALLEL = 20;
const DOWNLOAD = 100 * MB;
/** The documented overshoot of one connection. */
const BOUND_PER_CONNECTION = 144 * 1024;

type Path = 'forward' | 'connect' | 'socks5';

interface Outcome {
  /** Bytes the client socket moved both ways, headers and handshakes included. */
  moved: number;
  /** The status line when the gateway answered with one (forward and CONNECT). */
  status: string;
  /** Refused in the SOCKS5 handshake. */
  refused: boolean;
}

/** Reads until the gateway closes; never ends the connection itself. */
function untilClosed(socket: Socket): Promise<Outcome> {
  let head = '';
  socket.on('data', (chunk: Buffer) => {
    if (head.length < 64) head += chunk.subarray(0, 64).toString('latin1');
  });
  // Cuts are resets: a Node client that is behind on reading may see them as a clean end
  // (libuv), so how each ended is checked with curl below, not here.
  socket.on('error', () => {});
  socket.resume();
  return new Promise((resolve) =>
    socket.once('close', () =>
      resolve({
        moved: socket.bytesRead + socket.bytesWritten,
        status: head.split('\r\n')[0] ?? '',
        refused: false,
      }),
    ),
  );
}

async function download(
  net: ProxyNetwork,
  key: { id: string; secret: string },
  path: Path,
): Promise<Outcome> {
  const authority = `127.0.0.1:${net.targetPort}`;
  const get = `GET /stream/${DOWNLOAD} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
  const basic = Buffer.from(`${key.id}-country-de:${key.secret}`).toString('base64');
  if (path === 'socks5') {
    let socket: Socket;
    try {
      ({ socket } = await SocksClient.createConnection({
        proxy: {
          host: '127.0.0.1',
          port: net.ports.socks,
          type: 5,
          userId: `${key.id}-country-de`,
          password: key.secret,
        },
        command: 'connect',
        destination: { host: '127.0.0.1', port: net.targetPort },
        timeout: 20_000,
      }));
    } catch {
      // Refused before the tunnel: the handshake bytes are never billed.
      return { moved: 0, status: '', refused: true };
    }
    const outcome = untilClosed(socket);
    socket.write(get);
    return outcome;
  }
  const socket = connect(net.ports.proxy, '127.0.0.1');
  await once(socket, 'connect');
  const outcome = untilClosed(socket);
  socket.write(
    path === 'forward'
      ? `GET http://${authority}/stream/${DOWNLOAD} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`
      : `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n${get}`,
  );
  return outcome;
}

/** What the client moved on connections the gateway did not refuse with a status. */
function billable(outcomes: Outcome[]): number {
  return outcomes
    .filter((outcome) => !/^HTTP\/1\.1 4\d\d /.test(outcome.status))
    .reduce((sum, outcome) => sum + outcome.moved, 0);
}

async function newKey(
  net: ProxyNetwork,
  cap: number | null,
): Promise<{ id: string; secret: string }> {
  const key = (await (await net.api('/v1/keys', { method: 'POST', body: '{}' })).json()) as {
    id: string;
    secret: string;
  };
  if (cap !== null) {
    const patched = await net.api(`/v1/keys/${key.id}`, {
      method: 'PATCH',
      body: JSON.stringify({ monthly_byte_cap: cap }),
    });
    assert.equal(patched.status, 200);
  }
  return key;
}

/** A meter push (1 s) and a flush (USAGE_FLUSH_INTERVAL_MS, 500 ms here), with room. */
const SETTLED_MS = 2_000;

/**
 * The key's flushed usage once it is at least `atLeast` and has not moved for SETTLED_MS:
 * the downloads are over, and what the gateway's meter still held has reached the
 * database within a push and a flush, so a total that stays put is the whole of it.
 */
async function flushedUsage(net: ProxyNetwork, keyId: string, atLeast: number): Promise<number> {
  let total = -1;
  let since = performance.now();
  await eventually(
    async () => {
      const report = (await (await net.api(`/v1/usage?key_id=${keyId}`)).json()) as {
        totals: { bytes_up: number; bytes_down: number };
      };
      const now = report.totals.bytes_up + report.totals.bytes_down;
      if (now !== total) {
        total = now;
        since = performance.now();
      }
      return total >= atLeast && performance.now() - since >= SETTLED_MS;
    },
    20_000,
    `usage of ${keyId} to reach the database and stay put`,
  );
  return total;
}

/**
 * What the key's usage rows cost at `microPerGb`: each row (its key, exit node, country and
 * hour; one exit here) is charged its bytes times the price, rounded down.
 */
async function chargedFor(net: ProxyNetwork, keyId: string, microPerGb: number): Promise<number> {
  const report = (await (await net.api(`/v1/usage?key_id=${keyId}&granularity=hour`)).json()) as {
    items: Array<{ bytes_up: number; bytes_down: number }>;
  };
  return report.items.reduce(
    (sum, row) => sum + Math.floor(((row.bytes_up + row.bytes_down) * microPerGb) / 1e9),
    0,
  );
}

describe('a key with a 5 MB monthly cap and 20 parallel 100 MB downloads', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      TRIAL_CREDIT: '50',
      USAGE_FLUSH_INTERVAL_MS: '500',
    });
  });
  after(() => net?.close());

  for (const path of ['forward', 'connect', 'socks5'] as const) {
    test(`moves at most the cap plus the bound over ${path}`, async (t) => {
      const key = await newKey(net, CAP);
      const outcomes = await Promise.all(
        Array.from({ length: PARALLEL }, () => download(net, key, path)),
      );
      const moved = billable(outcomes);
      const bound = PARALLEL * BOUND_PER_CONNECTION;
      // What the key is billed for: every byte the gateway wrote to or read from the
      // clients, including what a reset discarded in flight (so at least what they got).
      const metered = await flushedUsage(net, key.id, moved);
      assert.ok(metered <= CAP + bound, `${path}: ${metered} bytes billed past a ${CAP} cap`);
      assert.ok(metered >= CAP, `${path}: only ${metered} bytes of a ${CAP} cap were used`);
      assert.ok(moved <= metered, `${path}: clients moved ${moved}, ${metered} were metered`);
      t.diagnostic(`${path}: ${metered} bytes billed on a ${CAP} cap, clients received ${moved}`);
      // And the key now refuses new connections.
      const refused = await download(net, key, path);
      if (path === 'socks5') assert.ok(refused.refused, 'SOCKS5 refuses in the handshake');
      else assert.match(refused.status, /^HTTP\/1\.1 402 /);
    });
  }
  test('a cut reaches curl as a connection reset on every path, not as a short body', async () => {
    for (const path of ['forward', 'connect', 'socks5'] as const) {
      const key = await newKey(net, 2 * MB);
      const user = `${key.id}-country-de:${key.secret}`;
      const proxy =
        path === 'socks5'
          ? ['-x', `socks5h://${user}@127.0.0.1:${net.ports.socks}`]
          : ['-x', `http://${user}@127.0.0.1:${net.ports.proxy}`];
      if (path === 'connect') proxy.push('--proxytunnel');
      const failure = await promisify(execFile)('curl', [
        '-sS',
        '-o',
        '/dev/null',
        ...proxy,
        `http://127.0.0.1:${net.targetPort}/stream/${DOWNLOAD}`,
      ]).then(
        () => assert.fail(`${path}: curl finished a 100 MB download on a 2 MB cap`),
        (error: { code: number; stderr: string }) => error,
      );
      // 56: failure receiving network data; a clean close mid-body would be 18.
      assert.equal(failure.code, 56, `${path}: curl said ${failure.stderr}`);
      assert.match(failure.stderr, /reset by peer/, path);
    }
  });
});

describe('an account with 5 MB worth of credit and 60 parallel downloads on three paths', () => {
  let net: ProxyNetwork;
  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }], {
      TRIAL_CREDIT: CREDIT,
      USAGE_FLUSH_INTERVAL_MS: '500',
    });
  });
  after(() => net?.close());

  test('never goes below minus the bound, and its keys are refused at zero', async (t) => {
    const keys = [await newKey(net, null), await newKey(net, null)];
    const paths: Path[] = ['forward', 'connect', 'socks5'];
    const outcomes = await Promise.all(
      Array.from({ length: 3 * PARALLEL }, (_, i) =>
        download(net, keys[i % 2] as { id: string; secret: string }, paths[i % 3] as Path),
      ),
    );
    const moved = billable(outcomes);
    const bound = (3 * PARALLEL * BOUND_PER_CONNECTION * PRICE) / 1e9;
    let balance = Number.NaN;
    let billed = 0;
    let charged = 0;
    await eventually(
      async () => {
        const me = (await (await net.api('/v1/me')).json()) as {
          account: { balance: { amount_micro: number } };
        };
        balance = me.account.balance.amount_micro;
        billed = 0;
        charged = 0;
        for (const key of keys) {
          billed += await flushedUsage(net, key.id, 0);
          charged += await chargedFor(net, key.id, PRICE);
        }
        return balance === CREDIT_MICRO - charged && billed >= moved;
      },
      15_000,
      'the balance to show every byte metered',
    ).catch(() =>
      assert.fail(
        `balance ${balance}, charged ${charged}, billed ${billed}, clients moved ${moved}`,
      ),
    );
    assert.ok(balance <= 0, `balance ${balance}: the credit was not used up`);
    assert.ok(balance >= -bound, `balance ${balance} is below minus the bound ${bound}`);
    t.diagnostic(`balance ${balance} after ${billed} bytes billed on ${CREDIT} of credit`);
    for (const key of keys) {
      const refused = await download(net, key, 'forward');
      assert.match(refused.status, /^HTTP\/1\.1 402 /);
    }
  });
});
