/**
 * 3b. Where the gateway's CPU per new tunnel stands against the floors of its own
 * architecture (a CONNECT relay whose tunnels are streams to an exit process, and
 * nothing else: over Node's HTTP/2 in h2-floor.ts, the tunnel v1; over a minimal
 * JavaScript multiplexer in mux-floor.ts, the lower bound of v2) and against
 * proxy-chain (one hop, no multiplexing), in rounds of the churn load of measurement 3
 * over them in rotating order. Each floor's two processes run on the proxy core like
 * the gateway and the agent.
 */
import type { Subject } from '../lib/client.ts';
import type { Measurement, SubjectsContext } from '../lib/context.ts';
import { log } from '../lib/context.ts';
import { median, tunnelChurn } from '../lib/load.ts';
import { type Managed, PROXY_CORE, startPortPrinter } from '../lib/processes.ts';
import type { FloorResult, FloorRow } from '../lib/report.ts';
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
      front: relay.managed,
      back: exit.managed,
      stop: () => Promise.all([relay.managed.stop(), exit.managed.stop()]),
    };
  } catch (error) {
    await exit.managed.stop();
    throw error;
  }
}

/** One proxy of the comparison: its subject, and its front and back processes. */
interface Contender {
  subject: Subject;
  front: Managed;
  back?: Managed;
}

export async function run(ctx: SubjectsContext): Promise<void> {
  const { config, origin, results, subjects, procsOf, target, warn } = ctx;
  const h2 = await startPair('h2-floor.ts', 'h2');
  const mux = await startPair('mux-floor.ts', 'mux').catch(async (error) => {
    await h2.stop();
    throw error;
  });
  try {
    const [gateway, agent] = procsOf.ipcola;
    const [chain] = procsOf['proxy-chain'];
    if (!gateway || !agent || !chain) throw new Error('floor: the subjects are not running');
    const contenders: Record<keyof FloorResult, Contender> = {
      ipcola: { subject: subjects.ipcola, front: gateway, back: agent },
      floor: h2,
      mux,
      proxyChain: { subject: subjects['proxy-chain'], front: chain },
    };
    const names = Object.keys(contenders) as Array<keyof FloorResult>;
    const tallies = new Map(
      names.map((n) => [
        n,
        {
          ops: 0,
          errors: 0,
          perSec: [] as number[],
          frontMs: 0,
          frontSysMs: 0,
          frontWrites: 0,
          backMs: 0,
        },
      ]),
    );
    log(
      `floor: ${config.rounds} rounds of ${config.churnTotal} new tunnels over ${names.length} proxies`,
    );
    for (let r = 0; r < config.rounds; r++) {
      // Rotated, so that none always runs first or last.
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + r) % names.length] as keyof FloorResult;
        const { subject, front, back } = contenders[name];
        const measured = await accounted(back ? [front, back] : [front], target, () =>
          tunnelChurn(subject, origin, {
            concurrency: config.churnConcurrency,
            total: config.churnTotal,
            warmup: 50,
            maxMs: 20_000,
          }),
        );
        const tally = tallies.get(name) as NonNullable<ReturnType<typeof tallies.get>>;
        tally.ops += measured.result.ops;
        tally.errors += measured.result.errors;
        tally.perSec.push(measured.result.perSec);
        tally.frontMs += measured.cpu.processMs[front.name] ?? 0;
        tally.frontSysMs += measured.cpu.processSysMs[front.name] ?? 0;
        tally.frontWrites += measured.cpu.processWrites[front.name] ?? 0;
        tally.backMs += back ? (measured.cpu.processMs[back.name] ?? 0) : 0;
      }
    }
    const row = (name: keyof FloorResult): FloorRow => {
      const tally = tallies.get(name) as NonNullable<ReturnType<typeof tallies.get>>;
      if (tally.errors > 0) warn(`floor: ${name} had ${tally.errors} failed tunnels`);
      const perTunnelUs = (ms: number) => (tally.ops > 0 ? (ms * 1000) / tally.ops : Number.NaN);
      return {
        perSec: median(tally.perSec),
        frontUs: perTunnelUs(tally.frontMs),
        frontSysUs: perTunnelUs(tally.frontSysMs),
        frontWrites: tally.ops > 0 ? tally.frontWrites / tally.ops : Number.NaN,
        backUs: perTunnelUs(tally.backMs),
      };
    };
    results.floor = {
      ipcola: row('ipcola'),
      floor: row('floor'),
      mux: row('mux'),
      proxyChain: row('proxyChain'),
    };
  } finally {
    await Promise.all([h2.stop(), mux.stop()]);
  }
}

export const measurement: Measurement = { name, stage: 'with-subjects', warmUp: true, run };
