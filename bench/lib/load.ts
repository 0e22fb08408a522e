/**
 * The measurement loops. Every loop is bounded twice: by a count and by a deadline.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  buildRequest,
  type Endpoint,
  HttpConn,
  openForwarding,
  openTunnel,
  type Subject,
} from './client.ts';

export interface RateResult {
  /** Successful operations in the measured window. */
  ops: number;
  errors: number;
  elapsedMs: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
  firstError?: string;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Opens `count` things with at most `concurrency` in flight, within maxMs. */
async function openMany<T>(
  count: number,
  concurrency: number,
  maxMs: number,
  open: () => Promise<T>,
): Promise<{ opened: T[]; errors: number; firstError?: string }> {
  const opened: T[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let started = 0;
  const deadline = performance.now() + maxMs;
  const worker = async () => {
    while (started < count && performance.now() < deadline && errors < Math.max(10, count / 10)) {
      started++;
      try {
        opened.push(await open());
      } catch (error) {
        errors++;
        firstError ??= message(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { opened, errors, ...(firstError ? { firstError } : {}) };
}

export interface KeepAliveOptions {
  connections: number;
  warmupMs: number;
  durationMs: number;
  maxOps: number;
  /** forward: plain HTTP through the proxy (absolute URI); tunnel: inside CONNECT/SOCKS tunnels. */
  mode: 'forward' | 'tunnel';
  path?: string;
}

/**
 * Requests per second over `connections` keep-alive connections, each with one request in
 * flight at a time (closed loop): a warm-up, then the measured window.
 */
export async function keepAliveRate(
  subject: Subject,
  origin: Endpoint,
  options: KeepAliveOptions,
): Promise<RateResult> {
  const request = buildRequest(subject, origin, options.path ?? '/1k', {
    forward: options.mode === 'forward',
  });
  const open = options.mode === 'forward' ? openForwarding : openTunnel;
  const {
    opened,
    errors: openErrors,
    firstError: openError,
  } = await openMany(
    options.connections,
    options.connections,
    15_000,
    async () => new HttpConn(await open(subject, origin)),
  );
  const stats = { ok: 0, errors: openErrors, firstError: openError };
  const latencies: number[] = [];
  const run = async (conn: HttpConn, until: number, budget: { left: number }, measure: boolean) => {
    while (conn.alive && budget.left > 0 && performance.now() < until) {
      budget.left--;
      const t0 = performance.now();
      try {
        const response = await conn.request(request);
        if (!measure) continue;
        if (response.status === 200) {
          stats.ok++;
          latencies.push(performance.now() - t0);
        } else {
          stats.errors++;
          stats.firstError ??= `HTTP ${response.status}`;
        }
      } catch (error) {
        if (measure) {
          stats.errors++;
          stats.firstError ??= message(error);
        }
        return;
      }
    }
  };
  try {
    const warmupUntil = performance.now() + options.warmupMs;
    const warmBudget = { left: options.maxOps };
    await Promise.all(opened.map((conn) => run(conn, warmupUntil, warmBudget, false)));
    const start = performance.now();
    const budget = { left: options.maxOps };
    await Promise.all(opened.map((conn) => run(conn, start + options.durationMs, budget, true)));
    const elapsedMs = performance.now() - start;
    latencies.sort((a, b) => a - b);
    return {
      ops: stats.ok,
      errors: stats.errors,
      elapsedMs,
      perSec: (stats.ok / elapsedMs) * 1000,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      ...(stats.firstError ? { firstError: stats.firstError } : {}),
    };
  } finally {
    for (const conn of opened) conn.close();
  }
}

/** Latency of one request at a time on one keep-alive connection. */
export async function serialLatency(
  subject: Subject,
  origin: Endpoint,
  options: { mode: 'forward' | 'tunnel'; warmup: number; count: number; maxMs: number },
): Promise<RateResult> {
  const request = buildRequest(subject, origin, '/1k', { forward: options.mode === 'forward' });
  const open = options.mode === 'forward' ? openForwarding : openTunnel;
  const conn = new HttpConn(await open(subject, origin));
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  try {
    for (let i = 0; i < options.warmup && conn.alive; i++) await conn.request(request);
    const start = performance.now();
    const deadline = start + options.maxMs;
    for (let i = 0; i < options.count && performance.now() < deadline; i++) {
      const t0 = performance.now();
      try {
        const response = await conn.request(request);
        if (response.status === 200) latencies.push(performance.now() - t0);
        else {
          errors++;
          firstError ??= `HTTP ${response.status}`;
        }
      } catch (error) {
        errors++;
        firstError ??= message(error);
        break;
      }
    }
    const elapsedMs = performance.now() - start;
    latencies.sort((a, b) => a - b);
    return {
      ops: latencies.length,
      errors,
      elapsedMs,
      perSec: (latencies.length / elapsedMs) * 1000,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      ...(firstError ? { firstError } : {}),
    };
  } finally {
    conn.close();
  }
}

/**
 * New tunnels per second: each operation opens a tunnel (or, direct, a TCP connection),
 * makes one tiny request with `Connection: close`, reads the answer and closes.
 */
export async function tunnelChurn(
  subject: Subject,
  origin: Endpoint,
  options: { concurrency: number; total: number; warmup: number; maxMs: number },
): Promise<RateResult> {
  const request = buildRequest(subject, origin, '/tiny', { forward: false, close: true });
  const one = async () => {
    const socket = await openTunnel(subject, origin);
    const conn = new HttpConn(socket);
    try {
      const response = await conn.request(request);
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
    } finally {
      conn.close();
    }
  };
  await openMany(options.warmup, options.concurrency, options.maxMs, one);
  const latencies: number[] = [];
  const start = performance.now();
  const result = await openMany(options.total, options.concurrency, options.maxMs, async () => {
    const t0 = performance.now();
    await one();
    latencies.push(performance.now() - t0);
  });
  const elapsedMs = performance.now() - start;
  latencies.sort((a, b) => a - b);
  return {
    ops: result.opened.length,
    errors: result.errors,
    elapsedMs,
    perSec: (result.opened.length / elapsedMs) * 1000,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    ...(result.firstError ? { firstError: result.firstError } : {}),
  };
}

export interface DownloadResult {
  /** MB/s (10^6 bytes per second) of each repetition. */
  runs: number[];
  medianMBps: number;
  errors: number;
  firstError?: string;
}

/** One large download per repetition, each through a fresh tunnel; time from request to last byte. */
export async function download(
  subject: Subject,
  origin: Endpoint,
  options: { path: string; bytes: number; reps: number; maxMs: number },
): Promise<DownloadResult> {
  const request = buildRequest(subject, origin, options.path, { forward: false });
  const runs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const deadline = performance.now() + options.maxMs;
  for (let i = 0; i < options.reps && performance.now() < deadline; i++) {
    let conn: HttpConn | undefined;
    try {
      conn = new HttpConn(await openTunnel(subject, origin));
      const t0 = performance.now();
      const response = await conn.request(request);
      const seconds = (performance.now() - t0) / 1000;
      if (response.status !== 200 || response.bodyBytes !== options.bytes) {
        throw new Error(`HTTP ${response.status}, ${response.bodyBytes} bytes`);
      }
      runs.push(options.bytes / 1e6 / seconds);
    } catch (error) {
      errors++;
      firstError ??= message(error);
    } finally {
      conn?.close();
    }
  }
  return { runs, medianMBps: median(runs), errors, ...(firstError ? { firstError } : {}) };
}

/** Opens `count` CONNECT/SOCKS tunnels and leaves them idle; the caller destroys them. */
export async function holdTunnels(
  subject: Subject,
  origin: Endpoint,
  options: { count: number; concurrency: number; maxMs: number },
): Promise<{ sockets: Socket[]; errors: number; firstError?: string; elapsedMs: number }> {
  const start = performance.now();
  const result = await openMany(options.count, options.concurrency, options.maxMs, async () => {
    const socket = await openTunnel(subject, origin);
    socket.on('error', () => {});
    return socket;
  });
  return {
    sockets: result.opened,
    errors: result.errors,
    elapsedMs: performance.now() - start,
    ...(result.firstError ? { firstError: result.firstError } : {}),
  };
}

/** Closes sockets and waits (bounded) until they are gone. */
export async function closeAll(sockets: Socket[], maxMs = 5_000): Promise<void> {
  await Promise.race([
    Promise.all(
      sockets.map(
        (socket) =>
          new Promise<void>((resolve) => {
            if (socket.destroyed) return resolve();
            socket.once('close', () => resolve());
            socket.destroy();
          }),
      ),
    ),
    new Promise((resolve) => setTimeout(resolve, maxMs)),
  ]);
}
