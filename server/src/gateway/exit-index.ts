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
  /** Streams the exit can carry at once (its node's share); DEFAULT_CAPACITY when unknown. */
  readonly capacity?: number;
}

/** How a stream open through an exit went, as far as the exit is concerned. */
export type OpenOutcome =
  /** It opened, in `connectMs`. */
  | 'opened'
  /** The exit failed it (it dropped the stream, or its node said exit_failed). */
  | 'exit_failed'
  /** The exit did its part; the target refused or was unreachable. */
  | 'target_failed';

/** When opens that keep failing take an exit out of selection, and for how long. */
export interface ExitHealthPolicy {
  /** Failed opens in a row that eject an exit. */
  readonly failureLimit: number;
  /** First ejection; doubled by each failed probe, up to backoffMaxMs. */
  readonly backoffMs: number;
  readonly backoffMaxMs: number;
}

export const DEFAULT_EXIT_HEALTH: ExitHealthPolicy = {
  failureLimit: 3,
  backoffMs: 5_000,
  backoffMaxMs: 300_000,
};

interface Entry {
  exit: Exit;
  /** Streams open through this exit from this gateway: the load that selection balances. */
  active: number;
  /*
   * The exit's short memory of its opens, as plain numbers on the entry (a million exits):
   * success rate and connect time as moving averages, failures in a row, and when an
   * ejected exit may take its next probe (0 when it is in the pool).
   */
  /** The exit's capacity, kept here so that comparing costs never reads the exit itself. */
  capacity: number;
  okRate: number;
  connectMs: number;
  failures: number;
  ejectedUntil: number;
  backoffMs: number;
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
  /** Of those, the ones in the pool (not ejected for failing their opens). */
  healthy: number;
  /** The networks they are in, by exit count, most first. */
  asns: Array<{ asn: number; organization: string | null; exits: number }>;
}

const SAMPLE_TRIES = 32;
/** Streams an exit of unknown capacity is taken to carry at once. */
const DEFAULT_CAPACITY = 64;
/** Average connect time from which an exit counts as slow. */
const SLOW_CONNECT_MS = 2_000;
/** Weight of the newest open in the moving averages. */
const ALPHA = 0.2;
/**
 * How often the first of the two random picks is taken whatever its cost: an exit that
 * keeps losing the comparison still gets some traffic, so its memory is kept fresh.
 */
const EXPLORE = 1 / 16;

/**
 * The exits this gateway can reach, indexed for selection in (expected) constant time
 * however many there are: buckets by country, by country+city and by type, so a
 * selection samples only from exits that already match its narrowest filter.
 */
export class ExitIndex {
  readonly #entries = new Map<string, Entry>();
  readonly #buckets = new Map<string, Entry[]>();
  readonly #health: ExitHealthPolicy;

  constructor(health: Partial<ExitHealthPolicy> = {}) {
    this.#health = { ...DEFAULT_EXIT_HEALTH, ...health };
  }

  get size(): number {
    return this.#entries.size;
  }

  add(exit: Exit): void {
    // The same exit placed anew (a database reload) keeps its load and its memory.
    const before = this.#entries.get(exit.id);
    this.remove(exit.id);
    const entry: Entry = {
      exit,
      active: before?.active ?? 0,
      capacity: exit.capacity ?? DEFAULT_CAPACITY,
      okRate: before?.okRate ?? 1,
      connectMs: before?.connectMs ?? 0,
      failures: before?.failures ?? 0,
      ejectedUntil: before?.ejectedUntil ?? 0,
      backoffMs: before?.backoffMs ?? 0,
      lists: [],
      slots: [],
    };
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
   * A matching exit, or null. Power of two choices: of two random matching exits in the
   * pool, the cheaper (fewer open streams for its capacity, quicker to connect, fewer
   * failed opens), which spreads load nearly as well as a global least-loaded choice
   * without a scan; now and then the first pick whatever its cost (EXPLORE). Ejected
   * exits are left out until their back-off ends, when one open is let through as a
   * probe; when every match is ejected, they are used anyway rather than none.
   */
  select(targeting: Targeting, random: () => number = Math.random, now?: number): Exit | null {
    const list = this.#narrowestBucket(targeting);
    if (!list || list.length === 0) return null;
    const fits = (entry: Entry) => matches(entry.exit, targeting);
    // The clock is read only when an ejected exit comes up (selection runs per request).
    let clock = now;
    const time = () => {
      if (clock === undefined) clock = performance.now();
      return clock;
    };
    const inPool = (entry: Entry) => entry.ejectedUntil === 0 || entry.ejectedUntil <= time();
    const picked: Entry[] = [];
    for (let i = 0; i < SAMPLE_TRIES && picked.length < 2; i++) {
      const entry = list[Math.floor(random() * list.length)] as Entry;
      if (inPool(entry) && fits(entry) && entry !== picked[0]) picked.push(entry);
    }
    if (picked.length < 2) {
      // Rare matches (or a bucket of one): scan once, keeping two at random (reservoir),
      // preferring exits in the pool.
      picked.length = 0;
      let seen = 0;
      let fallback: Entry | undefined;
      for (const entry of list) {
        if (!fits(entry)) continue;
        if (!inPool(entry)) {
          if (!fallback || entry.ejectedUntil < fallback.ejectedUntil) fallback = entry;
          continue;
        }
        seen++;
        if (picked.length < 2) picked.push(entry);
        else if (random() * seen < 2) picked[Math.floor(random() * 2)] = entry;
      }
      if (picked.length === 0 && fallback) picked.push(fallback);
    }
    const [a, b] = picked;
    if (!a) return null;
    const chosen = !b || random() < EXPLORE || cost(a) <= cost(b) ? a : b;
    if (chosen.ejectedUntil > 0) {
      // Its back-off is over: this open is its probe, and the next waits for its answer.
      chosen.ejectedUntil = time() + chosen.backoffMs;
    }
    return chosen.exit;
  }

  /** Remembers how an open through the exit went; ejects it when its opens keep failing. */
  report(id: string, outcome: OpenOutcome, connectMs = 0, now: number = performance.now()): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    if (outcome === 'exit_failed') {
      entry.okRate += ALPHA * (0 - entry.okRate);
      entry.failures++;
      if (entry.ejectedUntil > 0) {
        // A failed probe: out again, for twice as long.
        entry.backoffMs = Math.min(entry.backoffMs * 2, this.#health.backoffMaxMs);
        entry.ejectedUntil = now + entry.backoffMs;
      } else if (entry.failures >= this.#health.failureLimit) {
        entry.backoffMs = this.#health.backoffMs;
        entry.ejectedUntil = now + entry.backoffMs;
      }
      return;
    }
    entry.okRate += ALPHA * (1 - entry.okRate);
    entry.failures = 0;
    entry.ejectedUntil = 0;
    entry.backoffMs = 0;
    if (outcome === 'opened') {
      entry.connectMs =
        entry.connectMs === 0 ? connectMs : entry.connectMs + ALPHA * (connectMs - entry.connectMs);
    }
  }

  /** Whether the exit is out of selection for failing its opens. */
  ejected(id: string, now: number = performance.now()): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && entry.ejectedUntil > now;
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

  /** Online exits by country, city and type, with their networks; never node identities. */
  regions(now: number = performance.now()): RegionCount[] {
    const counts = new Map<
      string,
      RegionCount & { byAsn: Map<number, RegionCount['asns'][number]> }
    >();
    for (const entry of this.#entries.values()) {
      const { exit } = entry;
      const key = `${exit.country ?? ''}|${exit.city ?? ''}|${exit.type}`;
      let count = counts.get(key);
      if (!count) {
        count = {
          country: exit.country ?? null,
          city: exit.city ?? null,
          type: exit.type,
          exits: 0,
          healthy: 0,
          asns: [],
          byAsn: new Map(),
        };
        counts.set(key, count);
      }
      count.exits++;
      if (entry.ejectedUntil <= now) count.healthy++;
      if (exit.asn !== undefined) {
        const network = count.byAsn.get(exit.asn);
        if (network) network.exits++;
        else
          count.byAsn.set(exit.asn, {
            asn: exit.asn,
            organization: exit.asOrganization ?? null,
            exits: 1,
          });
      }
    }
    return [...counts.values()]
      .map(({ byAsn, ...count }) => ({
        ...count,
        asns: [...byAsn.values()].sort((x, y) => y.exits - x.exits || x.asn - y.asn),
      }))
      .sort(
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

/**
 * What choosing the exit costs: its load for its capacity, times its slowness and its
 * failures, both in coarse steps so that healthy exits tie and share by load alone while
 * one that fails or crawls loses to them. Connects under SLOW_CONNECT_MS are all equal
 * (much of a connect is the target's doing), then each doubling costs half again;
 * success rates above 90% are all equal.
 */
function cost(entry: Entry): number {
  const load = (entry.active + 1) / entry.capacity;
  const slowness =
    entry.connectMs < SLOW_CONNECT_MS
      ? 1
      : 1 + 0.5 * Math.floor(Math.log2(entry.connectMs / (SLOW_CONNECT_MS / 2)));
  if (entry.okRate > 0.9) return load * slowness;
  const health = Math.max(Math.ceil(entry.okRate * 10) / 10, 0.1);
  return (load * slowness) / (health * health);
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
