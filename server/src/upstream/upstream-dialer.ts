/**
 * Streams through upstream proxies with the agent's guarantees, enforced by the gateway
 * because a supplier's proxy enforces nothing for us:
 *
 * 1. The target is normalised, its port checked, its name resolved ONCE here and every
 *    address checked against the same exit policy the agent uses (resolveTarget from
 *    @ipcola/shared/exit-policy, with UPSTREAM_ALLOW_TARGETS as the exceptions).
 * 2. The proxy is asked for exactly one checked IP literal, never the name: it cannot
 *    resolve it again to somewhere the policy never saw (no DNS rebinding).
 * 3. The proxy's own address passes the same policy (UPSTREAM_ALLOW_PROXIES as the
 *    exceptions), so registering a "proxy" at an internal address cannot turn the gateway
 *    into a scanner of its own network.
 * 4. Target addresses of the exit IP's family are tried one after another, each with its
 *    own share of one overall connect timeout, like the agent's egress.
 */
import { isIP, type Socket } from 'node:net';
import { plainDestination } from '@ipcola/shared/addresses';
import { type ExitPolicy, type LookupAll, resolveTarget } from '@ipcola/shared/exit-policy';
import {
  CONNECT_ATTEMPT_TIMEOUT_MS,
  CONNECT_TIMEOUT_MS,
  untilAborted,
} from '@ipcola/shared/protocol';
import { type IPColaError, ipcolaError, isIPColaError } from '../errors/index.ts';
import { connectToProxy, negotiate } from './dial.ts';
import type { UpstreamProxy } from './proxy-url.ts';

export interface UpstreamDialerOptions {
  /** Judges targets; its exceptions are UPSTREAM_ALLOW_TARGETS. */
  targetPolicy: ExitPolicy;
  /** Judges the proxies' own addresses; its exceptions are UPSTREAM_ALLOW_PROXIES. */
  proxyPolicy: ExitPolicy;
  /** Everything from resolving the target to the proxy's answer; CONNECT_TIMEOUT_MS by default. */
  connectTimeoutMs?: number;
  /** One target address's share when more follow; CONNECT_ATTEMPT_TIMEOUT_MS by default. */
  attemptTimeoutMs?: number;
  /** DNS lookup, replaceable in tests; defaults to dns.promises.lookup. */
  lookup?: LookupAll;
}

export interface UpstreamDialer {
  /**
   * A stream to host:port through the proxy, for an exit IP of the given family. When
   * `signal` aborts, the socket to the proxy is destroyed and the promise rejects with
   * the signal's reason.
   */
  open(
    proxy: UpstreamProxy,
    exitIp: string,
    target: { host: string; port: number },
    signal?: AbortSignal,
  ): Promise<Socket>;
  /** The proxy's checked addresses; rejects with exit_failed, or the signal's reason. */
  resolveProxy(proxy: UpstreamProxy, timeoutMs: number, signal?: AbortSignal): Promise<string[]>;
}

export function createUpstreamDialer(options: UpstreamDialerOptions): UpstreamDialer {
  const connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? CONNECT_ATTEMPT_TIMEOUT_MS;
  const { targetPolicy, proxyPolicy, lookup } = options;

  const resolveProxy = async (
    proxy: UpstreamProxy,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<string[]> => {
    const resolved = await within(
      resolveTarget(proxy.host, proxy.port, proxyPolicy, lookup),
      timeoutMs,
      signal,
      () => ipcolaError('exit_failed', `resolving the upstream proxy ${proxy.host} took too long`),
    );
    if (!resolved.ok) {
      throw ipcolaError('exit_failed', `the upstream proxy is not usable: ${resolved.reason}`);
    }
    return resolved.addresses.map(plainDestination);
  };

  const open: UpstreamDialer['open'] = async (proxy, exitIp, target, signal) => {
    if (signal?.aborted) throw signal.reason;
    const deadline = performance.now() + connectTimeoutMs;
    const left = () => deadline - performance.now();
    const where = `${target.host}:${target.port}`;
    const resolved = await within(
      resolveTarget(target.host, target.port, targetPolicy, lookup),
      left(),
      signal,
      () => ipcolaError('target_timeout', `resolving ${target.host} took too long`),
    );
    if (!resolved.ok) throw ipcolaError(resolved.code, resolved.reason);

    const family = isIP(exitIp);
    const candidates = resolved.addresses.map(plainDestination).filter((a) => isIP(a) === family);
    if (candidates.length === 0) {
      throw ipcolaError(
        'target_unreachable',
        `${target.host} has no IPv${family} address to reach from exit IP ${exitIp}`,
      );
    }
    const proxyAddresses = await resolveProxy(proxy, left(), signal);

    const failures: IPColaError[] = [];
    for (const [index, address] of candidates.entries()) {
      const remaining = left();
      if (remaining <= 0) break;
      const budget =
        index === candidates.length - 1 ? remaining : Math.min(attemptTimeoutMs, remaining);
      const attemptEnds = performance.now() + budget;
      // exit_failed from here on is the proxy's fault: another target address cannot help.
      const socket = await connectToProxy(proxyAddresses, proxy.port, budget, signal);
      try {
        return await negotiate(
          socket,
          proxy,
          { address, port: target.port },
          Math.max(1, attemptEnds - performance.now()),
          signal,
        );
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (!isIPColaError(error) || error.code === 'exit_failed') throw error;
        failures.push(error);
      }
    }
    const unreachable = failures.find((failure) => failure.code === 'target_unreachable');
    const detail = failures.map((failure) => failure.message).join('; ');
    throw ipcolaError(
      unreachable ? 'target_unreachable' : 'target_timeout',
      `could not connect to ${where} through the upstream proxy${detail ? ` (${detail})` : ''}`,
    );
  };

  return {
    resolveProxy,
    // Whatever a cancellation interrupted (a connect, a handshake), it is what the caller hears.
    open: (proxy, exitIp, target, signal) =>
      open(proxy, exitIp, target, signal).catch((error: unknown) => {
        throw signal?.aborted ? signal.reason : error;
      }),
  };
}

/**
 * The promise's value; `timedOut()` once ms have passed, or the signal's reason once it
 * aborts (the promise is left to settle).
 */
async function within<T>(
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal | undefined,
  timedOut: () => Error,
): Promise<T> {
  if (ms <= 0) throw timedOut();
  const timeout = AbortSignal.timeout(Math.ceil(ms));
  const stop = signal ? AbortSignal.any([signal, timeout]) : timeout;
  try {
    return await untilAborted(promise, stop);
  } catch (error) {
    throw stop.aborted && stop.reason === timeout.reason ? timedOut() : error;
  }
}
