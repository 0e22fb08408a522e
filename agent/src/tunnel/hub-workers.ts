/**
 * The tunnels an agent holds on the workers of the hub address it is on. A server with
 * WORKERS=N is N hubs behind one port, each handed connections in turn; the agent holds
 * one tunnel on every one of them, so that each worker serves its customers through a
 * tunnel of its own instead of relaying them to a sibling. This keeps which tunnel is on
 * which worker, how many workers the hub said there are, and how many dials the current
 * round of filling the missing ones may still take; the client dials.
 */
import type { HubWorker } from '@ipcola/shared/protocol';
import type { HubAddress } from './hub-addresses.ts';

/**
 * Dials per round of filling, per worker of the host, before the round backs off. A lone
 * agent meets the workers in turn and needs one dial per missing worker; agents dialling
 * together land at random, and collecting N workers then takes about N·ln N dials.
 */
const DIALS_PER_WORKER = 3;

export class HubWorkers<Session> {
  readonly #held = new Map<Session, number | undefined>();
  #address: HubAddress | undefined;
  #count = 1;
  #dials = 0;

  /** The hub address the tunnels are on; undefined when none is held. */
  get address(): HubAddress | undefined {
    return this.#address;
  }

  /** Tunnels that take new streams (not those told to go away). */
  get size(): number {
    return this.#held.size;
  }

  /** How many workers the hub said its host runs (1 when it said nothing). */
  get count(): number {
    return this.#count;
  }

  /** The first tunnel on a hub address: the set belongs to that address from now on. */
  attach(address: HubAddress, session: Session, worker: HubWorker | undefined): void {
    this.#held.clear();
    this.#address = address;
    this.#count = 1;
    this.#dials = 0;
    this.add(session, worker);
  }

  /** Another tunnel on the same address (a sibling worker). */
  add(session: Session, worker: HubWorker | undefined): void {
    this.#held.set(session, worker?.id);
    // The latest word: a host restarted with another WORKERS says so in each 101.
    this.#count = worker?.count ?? this.#count;
    this.#dials = 0;
  }

  /**
   * The tunnel closed or was told to go away; undefined when it was not held (already
   * removed). The address is forgotten with the last tunnel.
   */
  remove(session: Session): { worker: number | undefined } | undefined {
    if (!this.#held.has(session)) return undefined;
    const worker = this.#held.get(session);
    this.#held.delete(session);
    if (this.#held.size === 0) this.#address = undefined;
    return { worker };
  }

  holds(worker: number): boolean {
    for (const id of this.#held.values()) if (id === worker) return true;
    return false;
  }

  /** The workers held, for the hub to refuse a dial that reached one of them again. */
  heldWorkers(): number[] {
    return [...new Set([...this.#held.values()].filter((id) => id !== undefined))];
  }

  /** Workers of the host not held yet: 0 for a hub that does not say (one tunnel, as before). */
  missing(): number {
    if (this.#held.size === 0) return 0;
    // A tunnel to a hub that did not say which worker it is: nothing to tell them apart by.
    for (const id of this.#held.values()) if (id === undefined) return 0;
    return Math.max(0, this.#count - this.heldWorkers().length);
  }

  /**
   * Counts a dial for a missing worker; false once this round has had its dials (the
   * caller waits a back-off delay, then calls newRound()).
   */
  takeDial(): boolean {
    if (this.#dials >= DIALS_PER_WORKER * this.#count) return false;
    this.#dials += 1;
    return true;
  }

  newRound(): void {
    this.#dials = 0;
  }

  /** A dial failed for another reason than a held worker: the rest of the round waits. */
  endRound(): void {
    this.#dials = DIALS_PER_WORKER * this.#count;
  }
}
