/**
 * The exit directory with a node held by two instances at once (an agent attached to
 * two workers of a host): three directories on one in-process hot state, A and B
 * holding the node, C holding nothing. A holder uses its own tunnel; C uses the newest
 * holder, and when that one lets the node go, the other at once, with no gap in C's
 * index and no wait, whether the holder lost the agent or is draining.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { ExitDirectory, PlacedExit } from '../src/cluster/exit-directory.ts';
import { createMemoryHotState } from '../src/store/index.ts';
import { testDirectory } from './support/exit-directories.ts';

const NODE = 'node-1';
const EXITS: PlacedExit[] = [{ ip: '127.0.0.12', country: 'de' }];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Instance {
  readonly id: string;
  readonly directory: ExitDirectory;
  /** The node's exits in this instance's gateway index, as last set (undefined: none). */
  exits(): readonly PlacedExit[] | undefined;
  /** How many times the node left this instance's index. */
  removals(): number;
  /** Whether this instance's hub holds the node. */
  holds: boolean;
}

async function threeInstances(): Promise<[Instance, Instance, Instance]> {
  const hotState = createMemoryHotState();
  const make = (id: string): Instance => {
    let removals = 0;
    const { directory, index } = testDirectory(hotState, id, {
      isLocalAgent: () => instance.holds,
      onRemoved: () => {
        removals += 1;
      },
    });
    const instance: Instance = {
      id,
      directory,
      exits: () => index.get(NODE),
      removals: () => removals,
      holds: false,
    };
    cleanups.push(() => instance.directory.close());
    return instance;
  };
  const instances: [Instance, Instance, Instance] = [make('a'), make('b'), make('c')];
  // Each reads the others' announcements now rather than at its next round.
  for (const { directory } of instances) await directory.resync();
  return instances;
}

/** The node's agent attaches to `instance` (its hub announces the node). */
function attach(instance: Instance): void {
  instance.holds = true;
  instance.directory.addNodeExits(NODE, EXITS);
  // Registrations are ordered by their time in ms: the next one must be newer.
  const now = Date.now();
  while (Date.now() === now);
}

function detach(instance: Instance): void {
  instance.holds = false;
  instance.directory.removeNodeExits(NODE);
}

const signal = new AbortController().signal;

test('an instance holding the node uses its own tunnel, whoever else holds it', async () => {
  const [a, b] = await threeInstances();
  attach(a);
  attach(b);
  assert.equal(await a.directory.holder(NODE, 0, signal), 'here');
  assert.equal(await b.directory.holder(NODE, 0, signal), 'here');
  assert.equal(a.directory.remote(NODE), undefined);
});

test('another instance takes the newest holder, then the other at once when it lets the node go', async () => {
  const [a, b, c] = await threeInstances();
  attach(a);
  attach(b);
  assert.equal(c.directory.remote(NODE)?.instanceId, 'b');
  detach(b);
  assert.equal(c.directory.remote(NODE)?.instanceId, 'a', 'the other holder, at once');
  assert.deepEqual(c.exits(), EXITS);
  assert.equal(c.removals(), 0, 'the exits never left the index');
  // A holder that lost the node itself leases it through the one still holding it.
  assert.equal(b.directory.remote(NODE)?.instanceId, 'a');
  assert.deepEqual(b.exits(), EXITS);
  detach(a);
  assert.equal(c.directory.remote(NODE), undefined);
  assert.equal(c.exits(), undefined, 'held nowhere: out of the index');
});

test('a draining holder hands its streams to the other holder at once, with no wait for a move', async () => {
  const [a, b, c] = await threeInstances();
  attach(a);
  attach(b);
  b.directory.draining();
  detach(b);
  const started = performance.now();
  const holder = await c.directory.holder(NODE, 10_000, signal);
  assert.equal(holder === 'here' ? 'here' : holder?.instanceId, 'a');
  assert.ok(performance.now() - started < 1_000, 'not held back as moving');
  assert.deepEqual(c.exits(), EXITS);
});

test('a holder found unreachable is set aside for the other, and the node stays in the index', async () => {
  const [a, b, c] = await threeInstances();
  attach(a);
  attach(b);
  c.directory.unreachable('b');
  assert.equal(c.directory.remote(NODE)?.instanceId, 'a');
  assert.deepEqual(c.exits(), EXITS);
  c.directory.unreachable('a');
  assert.equal(c.directory.remote(NODE), undefined);
  assert.equal(c.exits(), undefined);
});
