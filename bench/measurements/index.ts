/**
 * The registry: every measurement, in the order a run takes them. Memory comes first, on a
 * gateway that has carried little; selection comes last, once the proxies are stopped.
 * `--only` picks from these names; the order stays this one.
 */
import type { Measurement } from '../lib/context.ts';
import * as churn from './churn.ts';
import * as download from './download.ts';
import * as floor from './floor.ts';
import * as forward from './forward.ts';
import * as hub from './hub.ts';
import * as latency from './latency.ts';
import * as memory from './memory.ts';
import * as rest from './rest.ts';
import * as selection from './selection.ts';
import * as soak from './soak.ts';
import * as tunnel from './tunnel.ts';
import * as wrk from './wrk.ts';

export const MEASUREMENTS: readonly Measurement[] = [
  memory.measurement,
  latency.measurement,
  forward.measurement,
  wrk.measurement,
  tunnel.measurement,
  churn.measurement,
  floor.measurement,
  download.measurement,
  selection.measurement,
  hub.measurement,
  rest.measurement,
];

/** Run only when asked for (`--soak DURATION`), never by default. */
export const SOAK: Measurement = soak.measurement;
export { parseDuration } from './soak.ts';

/** `--only` named a measurement that is not in the registry. */
export class UnknownMeasurementError extends Error {}

/**
 * The measurements named in `--only` (comma-separated), or all of them; an unknown name
 * is an error that lists the valid ones.
 */
export function selectMeasurements(only: string | undefined): Measurement[] {
  if (only === undefined) return [...MEASUREMENTS];
  const wanted = new Set(only.split(',').map((s) => s.trim()));
  const known = new Set(MEASUREMENTS.map((m) => m.name));
  const unknown = [...wanted].filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new UnknownMeasurementError(
      `--only: unknown measurement ${unknown.map((n) => `"${n}"`).join(', ')}; valid: ${[...known].join(', ')}`,
    );
  }
  return MEASUREMENTS.filter((m) => wanted.has(m.name));
}
