/**
 * 3b. Where the gateway's CPU per new tunnel stands against the Node floor of the same
 * architecture (h2-floor.ts: a CONNECT relay whose tunnels are HTTP/2 streams to an exit
 * process, and nothing else) and against proxy-chain (one hop, no multiplexing), in
 * rounds of the churn load of measurement 3 over them in rotating order; mux-floor.ts,
 * the same relay over a minimal JavaScript multiplexer, says what a lighter tunnel
 * protocol could save. Each floor's two processes run on the proxy core like the
 * gateway and the agent.
 */
import type { Subject } from '../lib/client.ts';
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log } from '../lib/context.ts';
import { type RateResult, tunnelChurn } from '../lib/load.ts';
import { PROXY_CORE, startPortPrinter } from '../lib/processes.ts';
import type { FloorResult } from '../lib/report.ts';
import { accounted } from '../lib/rounds.ts';

export const name = 'floor';

/** A floor's exit and relay, both on the proxy core. */
async function startPair(script: string, prefix: string) {
  const exit = await startPortPrinter(`${prefix}-exit`, PROXY_CORE, script, [], ['--role', 'exit']);
  try {
    const relay = await startPortPrinter(
      `${prefix}-relay`,
      PROXY_CORE,
      script,
      [],
      ['--role', 'relay', '--exit', String(exit.port)],
    );
    return {
      subject: {
        name: prefix,
        kind: 'http',
        proxy: { host: '127.0.0.1', port: relay.port },
      } satisfies Subject,
      procs: [relay.managed, exit.managed],
      stop: () => Promise.all([relay.managed.stop(), exit.managed.stop()]),
    };
  } catch (error) {
    await exit.managed.stop();
    throw error;
  }
}

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results, subjects, procsOf, target, warn } = ctx;
  const h2 = await startPair('h2-floor.ts', 'h2');
  const mux = await startPair('mux-floor.ts', 'mux').catch(async (error) => {
    await h2.stop();
    throw error;
  });
  try {
    const runs = {
      ipcola: { subject: subjects.ipcola, procs: procsOf.ipcola },
      floor: h2,
      mux,
      'proxy-chain': { subject: subjects['proxy-chain'], procs: procsOf['proxy-chain'] },
    };
    const names = Object.keys(runs) as Array<keyof typeof runs>;
    const totals = Object.fromEntries(
      names.map((n) => [
        n,
        { ops: 0, errors: 0, perSec: [] as number[], cpuMs: {} as Record<string, number> },
      ]),
    );
    log(`floor: ${config.rounds} rounds of ${config.churnTotal} new tunnels over 4 proxies`);
    for (let r = 0; r < config.rounds; r++) {
      for (let i = 0; i < names.length; i++) {
        const which = names[(i + r) % names.length] as keyof typeof runs;
        const { subject, procs } = runs[which];
        const measured = await accounted(
          procs,
          target,
          (): Promise<RateResult> =>
            tunnelChurn(subject, origin, {
              concurrency: config.churnConcurrency,
              total: config.churnTotal,
              warmup: 50,
              maxMs: 20_000,
            }),
        );
        const total = totals[which] as (typeof totals)[string];
        total.ops += measured.result.ops;
        total.errors += measured.result.errors;
        total.perSec.push(measured.result.perSec);
        for (const p of procs) {
          total.cpuMs[p.name] = (total.cpuMs[p.name] ?? 0) + (measured.cpu.processMs[p.name] ?? 0);
        }
      }
    }
    const perTunnel = (which: keyof typeof runs, process: string) => {
      const total = totals[which] as (typeof totals)[string];
      return total.ops > 0 ? ((total.cpuMs[process] ?? 0) * 1000) / total.ops : Number.NaN;
    };
    const median = (values: number[]) =>
      values.sort((a, b) => a - b)[values.length >> 1] ?? Number.NaN;
    for (const which of names) {
      const total = totals[which] as (typeof totals)[string];
      if (total.errors > 0) warn(`floor: ${which} had ${total.errors} failed tunnels`);
    }
    const result: FloorResult = {
      ipcola: {
        perSec: median((totals.ipcola as (typeof totals)[string]).perSec),
        frontUs: perTunnel('ipcola', 'ipcola-server'),
        backUs: perTunnel('ipcola', 'ipcola-agent'),
      },
      floor: {
        perSec: median((totals.floor as (typeof totals)[string]).perSec),
        frontUs: perTunnel('floor', 'h2-relay'),
        backUs: perTunnel('floor', 'h2-exit'),
      },
      mux: {
        perSec: median((totals.mux as (typeof totals)[string]).perSec),
        frontUs: perTunnel('mux', 'mux-relay'),
        backUs: perTunnel('mux', 'mux-exit'),
      },
      proxyChain: {
        perSec: median((totals['proxy-chain'] as (typeof totals)[string]).perSec),
        frontUs: perTunnel('proxy-chain', 'proxy-chain'),
        backUs: 0,
      },
    };
    results.floor = result;
  } finally {
    await Promise.all([h2.stop(), mux.stop()]);
  }
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
