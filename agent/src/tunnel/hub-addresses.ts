/**
 * The hub addresses an agent dials, in the order given: each `--hub`, and a name standing
 * for every address DNS answers for it (A and AAAA). Resolved again for every round of
 * dialling, so that a record added or removed is followed without a restart.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { HostPort } from '@ipcola/shared/protocol';

export interface HubAddress {
  /** As given: the name the hub's certificate must carry, and the Host header. */
  readonly host: string;
  readonly port: number;
  /** The IP address dialled. */
  readonly address: string;
  readonly family: 4 | 6;
}

/** Every address of a name, like dns.promises.lookup(name, { all: true }). */
export type LookupAll = (
  host: string,
) => Promise<ReadonlyArray<{ address: string; family: number }>>;

const systemLookup: LookupAll = (host) => dnsLookup(host, { all: true });

export interface ResolvedHubs {
  /** Without duplicates, in the order of the hubs given. */
  readonly addresses: HubAddress[];
  /** The names that did not resolve, and why. */
  readonly failures: Array<{ hub: string; error: Error }>;
}

export async function resolveHubs(
  hubs: readonly HostPort[],
  lookup: LookupAll = systemLookup,
): Promise<ResolvedHubs> {
  const answers = await Promise.allSettled(
    hubs.map(async ({ host, port }): Promise<HubAddress[]> => {
      const family = isIP(host);
      if (family === 4 || family === 6) return [{ host, port, address: host, family }];
      const records = await lookup(host);
      return records.map(({ address, family }) => ({
        host,
        port,
        address,
        family: family === 6 ? 6 : 4,
      }));
    }),
  );
  const addresses: HubAddress[] = [];
  const failures: ResolvedHubs['failures'] = [];
  const seen = new Set<string>();
  answers.forEach((answer, index) => {
    if (answer.status === 'rejected') {
      const hub = hubs[index] as HostPort;
      failures.push({ hub: `${hub.host}:${hub.port}`, error: answer.reason as Error });
      return;
    }
    for (const address of answer.value) {
      const key = `${address.host} ${address.address} ${address.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      addresses.push(address);
    }
  });
  return { addresses, failures };
}

/** `host:port`, with the address dialled when the host is a name: for logs. */
export function hubLabel({ host, port, address, family }: HubAddress): string {
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (address === host) return hostPort;
  return `${hostPort} (${family === 6 ? `[${address}]` : address})`;
}

/** The same address of the same hub (across rounds). */
export function sameHub(a: HubAddress, b: HubAddress): boolean {
  return a.host === b.host && a.port === b.port && a.address === b.address;
}
