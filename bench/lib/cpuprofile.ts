/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by where the
 * code lives (our server, the agent, a package in node_modules, Node's internals, GC).
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of non-idle time by place. */
  byPlace: Array<{ place: string; ms: number; pct: number }>;
  /** Heaviest functions by self time (non-idle). */
  top: Array<{ fn: string; where: string; ms: number; pct: number }>;
}

function placeOf(url: string, fn: string): string {
  if (url === '') {
    if (fn === '(garbage collector)') return 'GC';
    if (fn === '(idle)') return 'idle';
    if (fn === '(program)') return 'native (program)';
    return 'native';
  }
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return `npm:${modules[1]}`;
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/server/src/'))
    return `ipcola server: ${url.split('/server/src/')[1]?.split('/')[0]}`;
  if (url.includes('/agent/src/'))
    return `ipcola agent: ${url.split('/agent/src/')[1]?.split('/')[0]}`;
  if (url.includes('/packages/shared/src/'))
    return `ipcola shared: ${url.split('/packages/shared/src/')[1]?.split('/')[0]}`;
  return url;
}

/** A span of monotonic time in microseconds (process.hrtime and V8 share the clock). */
export interface Window {
  fromUs: number;
  toUs: number;
}

export async function readProfile(file: string): Promise<Profile> {
  return JSON.parse(await readFile(file, 'utf8')) as Profile;
}

/** Self time by function and by place, counting only samples inside `window` (all when absent). */
export function summariseProfile(profile: Profile, window?: Window, top = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (window && (t < window.fromUs || t > window.toUs)) continue;
    const id = profile.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + delta);
  }
  const places = new Map<string, number>();
  const functions = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  for (const [id, us] of self) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    const place = placeOf(frame.url, frame.functionName);
    if (place === 'idle') continue;
    busyUs += us;
    places.set(place, (places.get(place) ?? 0) + us);
    const short = frame.url.replace(
      /^.*\/(node_modules|server\/src|agent\/src|shared\/src)\//,
      '$1/',
    );
    const where = frame.url ? `${short}:${frame.lineNumber + 1}` : '';
    const name = frame.functionName || '(anonymous)';
    const key = `${name}@${where}`;
    const entry = functions.get(key) ?? { fn: name, where, us: 0 };
    entry.us += us;
    functions.set(key, entry);
  }
  const pct = (us: number) => (busyUs > 0 ? (100 * us) / busyUs : 0);
  return {
    totalMs: busyUs / 1000,
    byPlace: [...places]
      .sort((a, b) => b[1] - a[1])
      .map(([place, us]) => ({ place, ms: us / 1000, pct: pct(us) })),
    top: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ fn: f.fn, where: f.where, ms: f.us / 1000, pct: pct(f.us) })),
  };
}
