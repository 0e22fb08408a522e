import type { components } from '@ipcola/openapi';

type Readiness = components['schemas']['Readiness'];
type DependencyCheck = components['schemas']['DependencyCheck'];

/** Something readiness depends on: it answers ping() or it is down. */
export interface Dependency {
  readonly engine: DependencyCheck['engine'];
  ping(): Promise<void>;
}

const PING_TIMEOUT_MS = 1_000;

/** Pings every dependency in parallel, each bounded by a timeout. */
export async function checkReadiness(dependencies: {
  database: Dependency;
  hot_state: Dependency;
}): Promise<Readiness> {
  const [database, hotState] = await Promise.all([
    check(dependencies.database),
    check(dependencies.hot_state),
  ]);
  const ready = database.status === 'up' && hotState.status === 'up';
  return { status: ready ? 'ready' : 'not_ready', checks: { database, hot_state: hotState } };
}

async function check(dependency: Dependency): Promise<DependencyCheck> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      dependency.ping(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), PING_TIMEOUT_MS);
      }),
    ]);
    return { status: 'up', engine: dependency.engine, latency_ms: elapsed(started) };
  } catch (error) {
    return {
      status: 'down',
      engine: dependency.engine,
      latency_ms: elapsed(started),
      error: reason(error),
    };
  } finally {
    clearTimeout(timer);
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

/** A short reason: a system error code when there is one; never a URL or credential. */
function reason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^[A-Z0-9_]+$/.test(code)) return code;
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\w+:\/\/\S+/g, '[url]').slice(0, 200);
}
