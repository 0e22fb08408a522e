/** An empty report with what is known about the machine and the peers before the run. */
import { readFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import path from 'node:path';
import type { Config } from './config.ts';
import { LOAD_CORE, PROXY_CORE, ROOT } from './processes.ts';
import type { Results } from './report.ts';

async function fdLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? Number.NaN);
}

async function packageVersion(name: string): Promise<string | null> {
  try {
    const text = await readFile(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8');
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return null;
  }
}

export async function newResults(
  mode: Results['meta']['mode'],
  config: Config,
  versions: { squid: string; wrk: string | null },
): Promise<Results> {
  return {
    meta: {
      date: new Date().toISOString(),
      mode,
      nproc: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?',
      kernel: release(),
      node: process.version,
      squid: versions.squid,
      proxyChain: await packageVersion('proxy-chain'),
      wrk: versions.wrk,
      fdLimit: await fdLimit(),
      loadAvgStart: loadavg(),
      loadAvgEnd: [],
      loadCore: LOAD_CORE,
      proxyCore: PROXY_CORE,
      pinning: {},
      config: { ...config },
      durationS: 0,
      sanity: {},
      warnings: [],
      logProblems: [],
    },
    forward: {},
    forwardWrk: {},
    tunnel: {},
    churn: {},
    download: {},
    latencyForward: {},
    latencyTunnel: {},
    memory: null,
    memoryPeers: {},
    selection: null,
    rest: {},
    hub: null,
    soak: null,
    floor: null,
    phases: [],
    profiles: {},
  };
}
