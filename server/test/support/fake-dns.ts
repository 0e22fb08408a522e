/** A DNS the test writes: names map to addresses, and may be changed between lookups. */
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import type { LookupAll } from '@ipcola/shared/exit-policy';

export interface FakeDns {
  names: Map<string, string[]>;
  lookup: LookupAll;
}

export function fakeDns(entries: Record<string, string | string[]> = {}): FakeDns {
  const names = new Map(
    Object.entries(entries).map(([name, addresses]) => [name, ([] as string[]).concat(addresses)]),
  );
  return {
    names,
    async lookup(hostname) {
      const addresses = names.get(hostname);
      if (!addresses) {
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
      }
      return addresses.map((address): LookupAddress => ({ address, family: isIP(address) }));
    },
  };
}
