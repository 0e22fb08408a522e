/**
 * The helpers write the gateway's username grammar (canonical order, lowercase, ttl in its
 * largest unit) and refuse what the gateway would refuse as a BadParamsError naming the
 * option, before a single connection is opened.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BadParamsError } from '../src/errors.ts';
import { createProxyHelpers, type ProxyHelpers, type ProxyOptions } from '../src/proxy/index.ts';

const KEY_ID = 'k1d';
const SECRET = 'S3cret';

describe('proxy options are refused before any connection', () => {
  let gateway: Server;
  let connections = 0;
  let ipc: ProxyHelpers;

  before(async () => {
    // Stands where the gateway would be, only to count who connects.
    gateway = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    const { port } = gateway.address() as { port: number };
    ipc = createProxyHelpers({
      apiKey: `${KEY_ID}.${SECRET}`,
      proxyUrl: `http://127.0.0.1:${port}`,
      socksUrl: `socks5h://127.0.0.1:${port + 1}`,
    });
  });
  after(async () => {
    await ipc.close();
    await new Promise((resolve) => gateway.close(resolve));
  });

  it('writes every parameter in the order and form the gateway reads', () => {
    const url = new URL(
      ipc.proxyUrl({
        ttl: 3600,
        session: 'job_42',
        type: 'residential',
        asn: '7922',
        city: 'New York',
        region: 'NY',
        country: 'US',
      }),
    );
    assert.equal(
      url.username,
      `${KEY_ID}-country-us-region-ny-city-new_york-asn-7922-type-residential-session-job_42-ttl-1h`,
    );
    assert.equal(url.password, SECRET);
    assert.equal(url.protocol, 'http:');
    assert.equal(new URL(ipc.proxyUrl()).username, KEY_ID);
    for (const [ttl, written] of [
      ['10m', '10m'],
      ['120s', '2m'],
      [90, '90s'],
      ['24h', '24h'],
    ] as const) {
      assert.ok(ipc.proxyUrl({ session: 'a', ttl }).includes(`-ttl-${written}:`), String(ttl));
    }
    assert.equal(
      new URL(ipc.socksUrl({ country: 'de' })).href,
      `socks5h://${KEY_ID}-country-de:${SECRET}@127.0.0.1:${new URL(ipc.socksUrl()).port}`,
    );
    assert.deepEqual(ipc.playwrightProxy({ country: 'de' }), {
      server: `http://${new URL(ipc.proxyUrl()).host}`,
      username: `${KEY_ID}-country-de`,
      password: SECRET,
    });
    assert.deepEqual(ipc.gotScrapingOptions({ type: 'mobile' }), {
      proxyUrl: ipc.proxyUrl({ type: 'mobile' }),
    });
  });

  it("maps Crawlee's session ids to sticky sessions and no session to rotation", () => {
    const { newUrlFunction } = ipc.crawleeProxyOptions({ country: 'us', ttl: '5m' });
    assert.equal(
      new URL(newUrlFunction('session_AbC12')).username,
      `${KEY_ID}-country-us-session-session_AbC12-ttl-5m`,
    );
    assert.equal(new URL(newUrlFunction(7)).username, `${KEY_ID}-country-us-session-7-ttl-5m`);
    assert.equal(
      new URL(newUrlFunction('a.b-c')).username,
      `${KEY_ID}-country-us-session-a_b_c-ttl-5m`,
    );
    assert.equal(new URL(newUrlFunction()).username, `${KEY_ID}-country-us`);
  });

  const refused: Array<[unknown, string | RegExp]> = [
    [{ country: 'xx' }, /option 'country' 'xx' is not an assigned/],
    [{ country: 'uk' }, /'gb'/],
    [{ region: 'bad/slug' }, /option 'region'/],
    [{ city: 'x'.repeat(65) }, /option 'city'/],
    [{ asn: 0 }, /option 'asn'/],
    [{ asn: '12x' }, /option 'asn'/],
    [{ type: 'cable' }, /option 'type' must be one of residential, datacenter, mobile/],
    [{ session: 'a-b' }, /option 'session'/],
    [{ session: 'a', ttl: '25h' }, /option 'ttl' must be a whole number of seconds from 1s to 24h/],
    [{ session: 'a', ttl: '10x' }, /option 'ttl'/],
    [{ session: 'a', ttl: 1.5 }, /option 'ttl'/],
    [{ ttl: '10m' }, /option 'ttl' needs a 'session'/],
    [{ contry: 'us' }, /option 'contry' is not a proxy option/],
  ];

  it('refuses each bad option with a BadParamsError naming it', () => {
    for (const [options, message] of refused) {
      assert.throws(
        () => ipc.proxyUrl(options as ProxyOptions),
        (error: unknown) =>
          error instanceof BadParamsError &&
          error.code === 'bad_params' &&
          !!error.message.match(message),
        JSON.stringify(options),
      );
    }
  });

  it('refuses them in fetch, sessions, dispatchers, agents and Crawlee before connecting', async () => {
    const isBadParams = (error: unknown) => error instanceof BadParamsError;
    await assert.rejects(ipc.fetch('http://example.com/', { country: 'xx' }), isBadParams);
    await assert.rejects(
      ipc.fetch('https://example.com/', { session: 'a', ttl: '2d' }),
      isBadParams,
    );
    assert.throws(() => ipc.session({ country: 'xx' }), isBadParams);
    assert.throws(() => ipc.dispatcher({ type: 'cable' as 'mobile' }), isBadParams);
    await assert.rejects(ipc.httpsAgent({ region: '' }), isBadParams);
    assert.throws(() => ipc.crawleeProxyOptions({ ttl: '0s' }), isBadParams);
    assert.throws(
      () => ipc.crawleeProxyOptions({ session: 'mine' } as ProxyOptions),
      /set by Crawlee's sessions/,
    );
    assert.equal(connections, 0);
  });

  it('refuses an API key that is not KEYID.SECRET when the helpers are made', () => {
    assert.throws(
      () =>
        createProxyHelpers({ apiKey: 'nodot', proxyUrl: 'http://h:1', socksUrl: 'socks5h://h:2' }),
      /KEYID\.SECRET/,
    );
    assert.throws(
      () => createProxyHelpers({ apiKey: 'a.b', proxyUrl: 'ftp://h:1', socksUrl: 'socks5h://h:2' }),
      /proxyUrl must start with http:/,
    );
  });
});
