/**
 * The databases shipped in npm packages (DB-IP City Lite, ip-location-db's ASN list)
 * place well-known public addresses where they are: lookups only, no traffic. Private
 * and loopback addresses are never looked up in them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type GeoLocator, openGeoLocator, slug } from '../../src/geo/index.ts';
import { eventually, quietLogger } from '../support/engines.ts';

describe('the packaged databases locate well-known addresses', () => {
  let geo: GeoLocator;

  before(async () => {
    geo = openGeoLocator({ logger: quietLogger });
    // Read when first asked: ask, then wait until both families of both databases answer.
    await eventually(
      () =>
        geo.locate('8.8.8.8').city !== undefined &&
        geo.locate('8.8.8.8').asn !== undefined &&
        geo.locate('2001:4860:4860::8888').country !== undefined &&
        geo.locate('2001:4860:4860::8888').asn !== undefined,
      60_000,
      'the packaged databases to load',
    );
  });
  after(() => geo.close());

  test("Google's resolver is in the United States, in Google's network", () => {
    const place = geo.locate('8.8.8.8');
    assert.equal(place.country, 'us');
    assert.equal(place.asn, 15169);
    assert.match(place.asOrganization ?? '', /google/i);
    assert.match(place.region ?? '', /^[a-z0-9_]+$/, 'a slug');
  });

  test("Cloudflare's and Quad9's resolvers are in their networks", () => {
    assert.equal(geo.locate('1.1.1.1').asn, 13335);
    assert.match(geo.locate('1.1.1.1').asOrganization ?? '', /cloudflare/i);
    assert.equal(geo.locate('9.9.9.9').asn, 19281);
  });

  test("RIPE NCC's own address is in Amsterdam, in the Netherlands", () => {
    const place = geo.locate('193.0.6.139');
    assert.deepEqual([place.country, place.city, place.asn], ['nl', 'amsterdam', 3333]);
  });

  test('IPv6 addresses are looked up in the IPv6 files', () => {
    const place = geo.locate('2001:4860:4860::8888');
    assert.equal(place.asn, 15169);
    assert.match(place.country ?? '', /^[a-z]{2}$/);
    assert.equal(geo.locate('2606:4700:4700::1111').asn, 13335);
  });

  test('private, loopback and malformed addresses have no place', () => {
    for (const ip of [
      '127.0.0.12',
      '10.1.2.3',
      '192.168.1.1',
      '100.64.0.1',
      '::1',
      'fd00::1',
      'nope',
    ]) {
      assert.deepEqual(geo.locate(ip), {}, ip);
    }
  });

  test('a lookup takes microseconds', (t) => {
    const ips = Array.from(
      { length: 20_000 },
      (_, i) => `${(i % 200) + 20}.${i % 251}.${(i * 7) % 256}.1`,
    );
    const started = performance.now();
    for (const ip of ips) geo.locate(ip);
    const microseconds = ((performance.now() - started) * 1000) / ips.length;
    t.diagnostic(`${microseconds.toFixed(1)} µs per address`);
    assert.ok(microseconds < 200, `${microseconds} µs per address`);
  });

  test('place names become targeting slugs', () => {
    assert.equal(slug('New York'), 'new_york');
    assert.equal(slug('São Paulo'), 'sao_paulo');
    assert.equal(slug('Łódź'), 'lodz');
    assert.equal(slug('Amsterdam (Amsterdam-Centrum)'), 'amsterdam');
    assert.equal(slug('Frankfurt am Main'), 'frankfurt_am_main');
    assert.equal(slug('東京'), undefined);
  });
});
