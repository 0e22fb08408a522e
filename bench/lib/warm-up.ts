import type { SubjectsContext } from './context.ts';
import { log, WITH_SOCKS } from './context.ts';
import { keepAliveRate, tunnelChurn } from './load.ts';

/**
 * V8 compiles the proxies' hot paths only after thousands of requests (our gateway
 * forwards ~3x slower in its first second than after ~3 s of load). Every Node subject
 * gets the same warm-up on every path; Squid and direct get it too.
 */
export async function warmUp({ config, subjects, origin }: SubjectsContext): Promise<void> {
  log(`warm-up: ${config.warmupPassMs} ms per path per subject`);
  for (const name of WITH_SOCKS) {
    const subject = subjects[name];
    const base = { connections: config.connections, warmupMs: 0, maxOps: 2_000_000 };
    if (name !== 'ipcola-socks') {
      await keepAliveRate(subject, origin, {
        ...base,
        durationMs: config.warmupPassMs,
        mode: 'forward',
      });
    }
    await keepAliveRate(subject, origin, {
      ...base,
      durationMs: config.warmupPassMs / 2,
      mode: 'tunnel',
    });
    await tunnelChurn(subject, origin, {
      concurrency: 50,
      total: 200,
      warmup: 0,
      maxMs: 10_000,
    });
  }
}
