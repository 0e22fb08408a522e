/**
 * In production mode (PostgreSQL and Redis, TRUST_DECLARED_LOCATION unset) exits are
 * placed by the geolocation and ASN databases: customers target them by country, region,
 * city and ASN through the real gateway and real agents; a declared country the database
 * contradicts is corrected, a declared city in the right country refines it; a database
 * file replaced while the server runs is read again, and a broken one is not taken.
 * The databases are MMDB files this test writes, placing the 127.0.0.x exits.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ProxyAgent, request } from 'undici';
import { createScratchDatabase, eventually, needs, required } from './support/engines.ts';
import { type MmdbNetwork, writeMmdb } from './support/mmdb-file.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/** Munich in GeoIP2's nested form (MaxMind's and DB-IP's files), the others flat (ip-location-db's). */
const CITIES: MmdbNetwork[] = [
  {
    cidr: '127.0.0.12/32',
    data: {
      country: { iso_code: 'DE', names: { en: 'Germany' } },
      subdivisions: [{ iso_code: 'BY', names: { en: 'Bavaria' } }],
      city: { names: { en: 'Munich' } },
    },
  },
  { cidr: '127.0.0.13/32', data: { country_code: 'US', state1: 'New York', city: 'New York' } },
  {
    cidr: '127.0.0.14/32',
    data: { country_code: 'US', state1: 'California', city: 'Los Angeles' },
  },
];

const NETWORKS: MmdbNetwork[] = [
  {
    cidr: '127.0.0.12/32',
    data: { autonomous_system_number: 3320, autonomous_system_organization: 'Deutsche Telekom AG' },
  },
  {
    cidr: '127.0.0.12/30', // .12 to .15: the /32 above wins for .12, as in routing tables
    data: { autonomous_system_number: 7922, autonomous_system_organization: 'Comcast Cable' },
  },
].reverse();

interface Answer {
  status: number;
  body: string;
  country: string | undefined;
}

describe('exits are placed by the geolocation database, not by their operators', {
  skip: needs('DATABASE_URL', 'REDIS_URL'),
}, () => {
  let net: ProxyNetwork;
  let dir: string;
  let scratch: { url: string; drop(): Promise<void> };
  let redisUrl: string;
  let cityDb: string;

  /** One plain-HTTP request through the gateway with the username's targeting. */
  const fetchVia = async (params: string): Promise<Answer> => {
    const dispatcher = new ProxyAgent({ uri: net.proxyUrl(params), proxyTunnel: false });
    try {
      const res = await request(`${net.target}/`, { dispatcher });
      const country = res.headers['x-ipcola-exit-country'];
      return {
        status: res.statusCode,
        body: await res.body.text(),
        country: typeof country === 'string' ? country : undefined,
      };
    } finally {
      await dispatcher.close();
    }
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ipcola-geo-'));
    cityDb = path.join(dir, 'city.mmdb');
    const asnDb = path.join(dir, 'asn.mmdb');
    await writeMmdb(cityDb, 'IPCola-Test-City', CITIES);
    await writeMmdb(asnDb, 'IPCola-Test-ASN', NETWORKS);
    scratch = await createScratchDatabase(required('DATABASE_URL'));
    // A Redis database of its own, as other production-mode tests use.
    const redis = new URL(required('REDIS_URL'));
    redis.pathname = `/${1 + Math.floor(Math.random() * 15)}`;
    redisUrl = redis.toString();
    net = await startProxyNetwork(
      [
        { ip: '127.0.0.12', country: 'de' },
        { ip: '127.0.0.13', country: 'fr' }, // the database says New York
        { ip: '127.0.0.14', country: 'us', args: ['--city', 'san_francisco'] },
      ],
      {
        DATABASE_URL: scratch.url,
        REDIS_URL: redisUrl,
        GEOIP_DB: cityDb,
        ASN_DB: asnDb,
      },
    );
    // The databases are read when the first exit needs them; every exit is placed then.
    await eventually(
      async () => (await fetchVia('-city-munich')).status === 200,
      30_000,
      'the exits to be placed',
    );
  });

  after(async () => {
    await net?.close();
    await scratch?.drop();
    if (redisUrl) {
      const client = new Redis(redisUrl);
      try {
        const keys = await client.keys('ipcola:*');
        if (keys.length > 0) await client.del(...keys);
      } finally {
        client.disconnect();
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('a country only declared finds no exit there', async () => {
    const refused = await fetchVia('-country-fr');
    assert.equal(refused.status, 503, 'the exit declared in fr is not in fr');
  });

  test('country, region and city target the exit the database places there', async () => {
    for (let i = 0; i < 3; i++) {
      const de = await fetchVia('-country-de');
      assert.deepEqual([de.status, de.body, de.country], [200, '127.0.0.12', 'de']);
    }
    const bavaria = await fetchVia('-country-de-region-bavaria');
    assert.equal(bavaria.body, '127.0.0.12');
    const munich = await fetchVia('-city-munich');
    assert.equal(munich.body, '127.0.0.12');
    const california = await fetchVia('-country-us-region-california');
    assert.equal(california.body, '127.0.0.14');
  });

  test('a declared country the database contradicts is corrected', async () => {
    const newYork = await fetchVia('-country-us-city-new_york');
    assert.deepEqual([newYork.status, newYork.body, newYork.country], [200, '127.0.0.13', 'us']);
    const warned = net.server.logs.find(
      (line) =>
        line.ip === '127.0.0.13' &&
        line.declared === 'fr' &&
        line.located === 'us' &&
        line.level === 40,
    );
    assert.ok(warned, 'the correction is logged');
  });

  test("a declared city in the database's country refines it", async () => {
    const refined = await fetchVia('-country-us-city-san_francisco');
    assert.deepEqual([refined.status, refined.body], [200, '127.0.0.14']);
    const databases = await fetchVia('-country-us-city-los_angeles');
    assert.equal(databases.status, 503, "the declared city replaces the database's");
  });

  test('ASN targets the exits of that network, the longest prefix winning', async () => {
    for (let i = 0; i < 3; i++) {
      const telekom = await fetchVia('-asn-3320');
      assert.deepEqual([telekom.status, telekom.body], [200, '127.0.0.12']);
    }
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const comcast = await fetchVia('-asn-7922');
      assert.equal(comcast.status, 200);
      seen.add(comcast.body);
    }
    assert.deepEqual([...seen].sort(), ['127.0.0.13', '127.0.0.14']);
    assert.equal((await fetchVia('-asn-15169')).status, 503);
  });

  test('GET /v1/regions lists the places the database gave', async () => {
    const res = await net.api('/v1/regions?limit=100');
    assert.equal(res.status, 200);
    const { items } = (await res.json()) as {
      items: Array<{
        country: string | null;
        city: string | null;
        exits: number;
        healthy: number;
        asns: Array<{ asn: number; organization: string | null; exits: number }>;
      }>;
    };
    const places = items.map((region) => `${region.country}/${region.city}`).sort();
    assert.deepEqual(places, ['de/munich', 'us/new_york', 'us/san_francisco']);
    const munich = items.find((region) => region.city === 'munich');
    assert.deepEqual(munich?.asns, [{ asn: 3320, organization: 'Deutsche Telekom AG', exits: 1 }]);
    assert.equal(munich?.healthy, 1);
  });

  test('X-IPCola-Exit-Details: 1 asks for the region, city and network of the exit', async () => {
    const asked = async (details: boolean) => {
      const dispatcher = new ProxyAgent({
        uri: net.proxyUrl('-country-de'),
        proxyTunnel: false,
      });
      try {
        const res = await request(`${net.target}/`, {
          dispatcher,
          headers: details ? { 'X-IPCola-Exit-Details': '1' } : {},
        });
        await res.body.text();
        return res.headers;
      } finally {
        await dispatcher.close();
      }
    };
    const detailed = await asked(true);
    assert.equal(detailed['x-ipcola-exit-country'], 'de');
    assert.equal(detailed['x-ipcola-exit-region'], 'bavaria');
    assert.equal(detailed['x-ipcola-exit-city'], 'munich');
    assert.equal(detailed['x-ipcola-exit-asn'], '3320');
    assert.equal(detailed['x-ipcola-exit-as-organization'], 'Deutsche Telekom AG');
    const plain = await asked(false);
    assert.equal(plain['x-ipcola-exit-country'], 'de');
    assert.equal(plain['x-ipcola-exit-city'], undefined, 'only when asked');

    // CONNECT takes the same header, sent to the proxy; the answer's head carries them.
    const socket = connect(net.ports.proxy, '127.0.0.1');
    const credentials = Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString(
      'base64',
    );
    socket.write(
      `CONNECT 127.0.0.1:${net.targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${net.targetPort}\r\n` +
        `Proxy-Authorization: Basic ${credentials}\r\nX-IPCola-Exit-Details: 1\r\n\r\n`,
    );
    let head = '';
    for await (const chunk of socket) {
      head += String(chunk);
      if (head.includes('\r\n\r\n')) break;
    }
    socket.destroy();
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.match(head, /\r\nX-IPCola-Exit-City: munich\r\n/);
    assert.match(head, /\r\nX-IPCola-Exit-ASN: 3320\r\n/);
  });

  test('a database file replaced at run time is read again; a broken one is not taken', async () => {
    await writeMmdb(cityDb, 'IPCola-Test-City', [
      { cidr: '127.0.0.12/32', data: { country_code: 'AT', state1: 'Vienna', city: 'Vienna' } },
      ...CITIES.slice(1),
    ]);
    await eventually(
      async () => (await fetchVia('-country-at-city-vienna')).body === '127.0.0.12',
      30_000,
      'the exit to move to Vienna',
    );
    assert.equal((await fetchVia('-country-de')).status, 503);

    const reloadsBefore = net.server.logs.filter(
      (line) => line.msg === 'geolocation database loaded' && line.file === cityDb,
    ).length;
    await writeFile(`${cityDb}.tmp`, 'this is not an MMDB file');
    await rename(`${cityDb}.tmp`, cityDb);
    await eventually(
      () =>
        net.server.logs.some(
          (line) =>
            line.msg === 'geolocation database not reloaded: kept the previous one' &&
            line.file === cityDb,
        ),
      30_000,
      'the broken file to be refused',
    );
    const stillVienna = await fetchVia('-country-at');
    assert.deepEqual([stillVienna.status, stillVienna.body], [200, '127.0.0.12']);
    assert.equal(
      net.server.logs.filter(
        (line) => line.msg === 'geolocation database loaded' && line.file === cityDb,
      ).length,
      reloadsBefore,
    );
  });
});
