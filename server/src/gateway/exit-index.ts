import type { Targeting } from './credentials.ts';

export type ExitType = 'residential' | 'datacenter' | 'mobile';

/** One leasable exit IP of one connected node. */
export interface Exit {
  /** `${nodeId}/${ip}`: an IP may only be leased through the node that announced it. */
  readonly id: string;
  readonly nodeId: string;
  readonly ip: string;
  readonly type: ExitType;
  readonly country?: string;
  readonly region?: string;
  readonly city?: string;
  readonly asn?: number;
}

interface Entry {
  exit: Exit;
  /** Streams open through this exit from this gateway: the load that selection balances. */
  active: number;
  /** Position in each bucket it belongs to, for O(1) removal. */
  slots: Map<string, number>;
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
    const entry: Entry = { exit, active: 0, slots: new Map() };
    this.#entries.set(exit.id, entry);
    for (const bucket of bucketsOf(exit)) {
      let list = this.#buckets.get(bucket);
      if (!list) {
        list = [];
        this.#buckets.set(bucket, list);
      }
      entry.slots.set(bucket, list.length);
      list.push(entry);
    }
  }

  remove(id: string): Exit | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    for (const [bucket, slot] of entry.slots) {
      const list = this.#buckets.get(bucket) as Entry[];
      const last = list.pop() as Entry;
      if (last !== entry) {
        list[slot] = last;
        last.slots.set(bucket, slot);
      }
      if (list.length === 0) this.#buckets.delete(bucket);
    }
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
    const candidates: string[] = ['*'];
    if (targeting.country) {
      candidates.push(`c:${targeting.country}`);
      if (targeting.city) candidates.push(`cc:${targeting.country}:${targeting.city}`);
    }
    if (targeting.type) candidates.push(`t:${targeting.type}`);
    let best: Entry[] | undefined;
    for (const name of candidates) {
      const list = this.#buckets.get(name);
      if (!list) return undefined; // a required bucket is empty: nothing can match
      if (!best || list.length < best.length) best = list;
    }
    return best;
  }
}

function bucketsOf(exit: Exit): string[] {
  const names = ['*', `t:${exit.type}`];
  if (exit.country) {
    names.push(`c:${exit.country}`);
    if (exit.city) names.push(`cc:${exit.country}:${exit.city}`);
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
