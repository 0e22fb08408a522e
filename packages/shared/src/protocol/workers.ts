/**
 * Workers of one host: a server started with WORKERS=N runs N hubs behind one port
 * (node:cluster hands each connection to one of them in turn). An agent holds one tunnel
 * on each, so that every worker serves its customers through a local tunnel instead of
 * relaying them to the worker that holds the node. The hub says in its 101 which worker
 * the agent reached and how many there are; the agent, dialling again for the others,
 * names the workers it already holds, and a hub it reached twice refuses at once, before
 * any token check (HELD_WORKER_STATUS), so that the agent dials again.
 */

/** 101 response: `<worker>/<workers>`, e.g. `2/4` (1/1 for a server without workers). */
export const WORKER_HEADER = 'x-ipcola-worker';

/** Upgrade request: the workers of this hub address the agent holds a tunnel on, `1,3`. */
export const HELD_WORKERS_HEADER = 'x-ipcola-held-workers';

/**
 * Upgrade refusal for an agent that reached a worker it already holds a tunnel on (421
 * Misdirected Request): nothing is wrong, the next dial goes to another worker.
 */
export const HELD_WORKER_STATUS = 421;

/** The most workers a hub may announce: bounds what an agent dials and remembers. */
export const MAX_WORKERS = 256;

/**
 * Which worker of a host a hub is: its node:cluster worker id, which is not an index (a
 * worker that replaces a dead one gets a new id), and how many workers the host runs.
 */
export interface HubWorker {
  readonly id: number;
  readonly count: number;
}

const WORKER = /^ *([1-9][0-9]{0,8}) *\/ *([1-9][0-9]{0,3}) *$/;

export function formatWorker({ id, count }: HubWorker): string {
  return `${id}/${count}`;
}

/** The hub's WORKER_HEADER; undefined when absent (an older hub) or malformed. */
export function parseWorker(text: string | string[] | undefined): HubWorker | undefined {
  if (typeof text !== 'string') return undefined;
  const match = WORKER.exec(text);
  if (!match) return undefined;
  const id = Number(match[1]);
  const count = Number(match[2]);
  if (count > MAX_WORKERS) return undefined;
  return { id, count };
}

export function formatHeldWorkers(ids: Iterable<number>): string {
  return [...ids].join(',');
}

/** The agent's HELD_WORKERS_HEADER: the worker ids it lists, at most MAX_WORKERS of them. */
export function parseHeldWorkers(text: string | string[] | undefined): ReadonlySet<number> {
  if (typeof text !== 'string' || text.length > MAX_WORKERS * 11) return new Set();
  const ids = new Set<number>();
  for (const part of text.split(',')) {
    const id = Number(part.trim());
    if (Number.isSafeInteger(id) && id > 0) ids.add(id);
    if (ids.size >= MAX_WORKERS) break;
  }
  return ids;
}
