import type { ExitLocation, ExitType, Targeting } from '@ipcola/shared/targeting';

export type { ExitType };

/** One leasable exit IP of one connected node. */
export interface Exit extends ExitLocation {
  /** `${nodeId}/${ip}`: an IP may only be leased through the node that announced it. */
  readonly id: string;
  readonly nodeId: string;
  readonly ip: string;
  readonly type: ExitType;
  /** The address targets see when it is not `ip` (a node behind NAT proved it so). */
  readonly publicIp?: string;
  /** The autonomous system's holder, as the geolocation database names it. */
  readonly asOrganization?: string;
}

interface Entry {
  exit: Exit;
  /** Streams open through this exit from this gateway: the load that selection balances. */
  active: number;
  /**
   * The buckets it is filed in and its position in each, for O(1) removal. Arrays, not a
   * Map: a Map per exit costs hundreds of bytes, times a million exits.
   */
  lists: Entry[][];
  slots: number[];
}

export interface RegionCount {
  country: string | null;
  city: string | null;
  type: ExitType;
  exits: number;
}

const SAMPLE_TRIES = 32;

/**
 * The exits this gateway can reach, indexed for selection in (expected) constant time
 * however many there are: buckets by country, by country+city and by type, so a
 * selection samples only from exits that already match its narrowest filter.
 */
export class ExitIndex {
  readonly #entries = new Map<string, Entry>();
  readonly #buckets = new Map<string, Entry[]>();

  get size(): number {
    return this.#entries.size;
  }

  add(exit: Exit): void {
    this.remove(exit.id);
    const entry: Entry = { exit, active: 0, lists: [], slots: [] };
    this.#entries.set(exit.id, entry);
    for (const bucket of bucketsOf(exit)) {
      let list = this.#buckets.get(bucket);
      if (!list) {
        list = [];
        this.#buckets.set(bucket, list);
      }
      entry.lists.push(list);
      entry.slots.push(list.length);
      list.push(entry);
    }
  }

  remove(id: string): Exit | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    const names = bucketsOf(entry.exit);
    entry.lists.forEach((list, i) => {
      const slot = entry.slots[i] as number;
      const last = list.pop() as Entry;
      if (last !== entry) {
        list[slot] = last;
        last.slots[last.lists.indexOf(list)] = slot;
      }
      if (list.length === 0) this.#buckets.delete(names[i] as string);
    });
    return entry.exit;
  }

  /** Removes every exit of a node; returns them. */
  removeNode(nodeId: string, ips: readonly string[]): Exit[] {
    const removed: Exit[] = [];
    for (const ip of ips) {
      const exit = this.remove(`${nodeId}/${ip}`);
      if (exit) removed.push(exit);
    }
    return removed;
  }

  get(id: string): Exit | undefined {
    return this.#entries.get(id)?.exit;
  }

  /**
   * A matching exit, or null. Power of two choices: of two random matching exits, the
   * one with fewer open streams, which spreads load nearly as well as least-loaded
   * without a global scan.
   */
  select(targeting: Targeting, random: () => number = Math.random): Exit | null {
    const list = this.#narrowestBucket(targeting);
    if (!list || list.length === 0) return null;
    const fits = (entry: Entry) => matches(entry.exit, targeting);
    const picked: Entry[] = [];
    for (let i = 0; i < SAMPLE_TRIES && picked.length < 2; i++) {
      const entry = list[Math.floor(random() * list.length)] as Entry;
      if (fits(entry) && entry !== picked[0]) picked.push(entry);
    }
    if (picked.length < 2) {
      // Rare matches (or a bucket of one): scan once, keeping two at random (reservoir).
      picked.length = 0;
      let seen = 0;
      for (const entry of list) {
        if (!fits(entry)) continue;
        seen++;
        if (picked.length < 2) picked.push(entry);
        else if (random() * seen < 2) picked[Math.floor(random() * 2)] = entry;
      }
    }
    const [a, b] = picked;
    if (!a) return null;
    return (b && b.active < a.active ? b : a).exit;
  }

  /** Counts a stream opened through an exit; the returned function un-counts it (idempotent). */
  acquire(id: string): () => void {
    const entry = this.#entries.get(id);
    if (!entry) return () => {};
    entry.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.active--;
    };
  }

  /** Online exits by country, city and type; never node identities. */
  regions(): RegionCount[] {
    const counts = new Map<string, RegionCount>();
    for (const { exit } of this.#entries.values()) {
      const key = `${exit.country ?? ''}|${exit.city ?? ''}|${exit.type}`;
      const count = counts.get(key);
      if (count) count.exits++;
      else {
        counts.set(key, {
          country: exit.country ?? null,
          city: exit.city ?? null,
          type: exit.type,
          exits: 1,
        });
      }
    }
    return [...counts.values()].sort(
      (x, y) =>
        (x.country ?? '').localeCompare(y.country ?? '') ||
        (x.city ?? '').localeCompare(y.city ?? '') ||
        x.type.localeCompare(y.type),
    );
  }

  #narrowestBucket(targeting: Targeting): Entry[] | undefined {
    let best: Entry[] | undefined;
    for (const name of bucketsFor(targeting)) {
      const list = this.#buckets.get(name);
      if (!list) return undefined; // a required bucket is empty: nothing can match
      if (!best || list.length < best.length) best = list;
    }
    return best;
  }
}

/*
 * The buckets an exit is filed under. Each targeting dimension, and the combinations
 * customers use together, has its own bucket, so the narrowest bucket of a selection is
 * (nearly) all matches and sampling finds two in a few tries: scanning a country's
 * 20,000 exits for its 5% mobile ones, or a million for one ASN, would cost milliseconds.
 */
function bucketsOf(exit: Exit): string[] {
  const names = ['*', `t:${exit.type}`];
  if (exit.asn !== undefined) names.push(`a:${exit.asn}`);
  if (exit.country) {
    const c = exit.country;
    names.push(`c:${c}`, `ct:${c}:${exit.type}`);
    if (exit.region) names.push(`cr:${c}:${exit.region}`);
    if (exit.city) names.push(`cc:${c}:${exit.city}`, `cct:${c}:${exit.city}:${exit.type}`);
  }
  return names;
}

/** The buckets every match of a targeting is in: the names bucketsOf() files under. */
function bucketsFor(targeting: Targeting): string[] {
  const names = ['*'];
  const { country: c, region, city, type, asn } = targeting;
  if (type) names.push(`t:${type}`);
  if (asn !== undefined) names.push(`a:${asn}`);
  if (c) {
    names.push(`c:${c}`);
    if (type) names.push(`ct:${c}:${type}`);
    if (region) names.push(`cr:${c}:${region}`);
    if (city) {
      names.push(`cc:${c}:${city}`);
      if (type) names.push(`cct:${c}:${city}:${type}`);
    }
  }
  return names;
}

function matches(exit: Exit, targeting: Targeting): boolean {
  return (
    (targeting.country === undefined || exit.country === targeting.country) &&
    (targeting.region === undefined || exit.region === targeting.region) &&
    (targeting.city === undefined || exit.city === targeting.city) &&
    (targeting.asn === undefined || exit.asn === targeting.asn) &&
    (targeting.type === undefined || exit.type === targeting.type)
  );
}
