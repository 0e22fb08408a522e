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
import { type IPColaError, ipcolaError, isIPColaError } from '../errors/index.ts';
import { connectToProxy, negotiate } from './dial.ts';
import type { UpstreamProxy } from './proxy-url.ts';

/** Everything from resolving the target to the proxy's answer. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** One target address's share when more addresses follow. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 4_000;

export interface UpstreamDialerOptions {
  /** Judges targets; its exceptions are UPSTREAM_ALLOW_TARGETS. */
  targetPolicy: ExitPolicy;
  /** Judges the proxies' own addresses; its exceptions are UPSTREAM_ALLOW_PROXIES. */
  proxyPolicy: ExitPolicy;
  connectTimeoutMs?: number;
  attemptTimeoutMs?: number;
  /** DNS lookup, replaceable in tests; defaults to dns.promises.lookup. */
  lookup?: LookupAll;
}

export interface UpstreamDialer {
  /** A stream to host:port through the proxy, for an exit IP of the given family. */
  open(
    proxy: UpstreamProxy,
    exitIp: string,
    target: { host: string; port: number },
  ): Promise<Socket>;
  /** The proxy's checked addresses; rejects with exit_failed. */
  resolveProxy(proxy: UpstreamProxy, timeoutMs: number): Promise<string[]>;
}

export function createUpstreamDialer(options: UpstreamDialerOptions): UpstreamDialer {
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  const { targetPolicy, proxyPolicy, lookup } = options;

  const resolveProxy = async (proxy: UpstreamProxy, timeoutMs: number): Promise<string[]> => {
    const resolved = await within(
      resolveTarget(proxy.host, proxy.port, proxyPolicy, lookup),
      timeoutMs,
      () => ipcolaError('exit_failed', `resolving the upstream proxy ${proxy.host} took too long`),
    );
    if (!resolved.ok) {
      throw ipcolaError('exit_failed', `the upstream proxy is not usable: ${resolved.reason}`);
    }
    return resolved.addresses.map(plainDestination);
  };

  return {
    resolveProxy,
    async open(proxy, exitIp, target) {
      const deadline = performance.now() + connectTimeoutMs;
      const left = () => deadline - performance.now();
      const where = `${target.host}:${target.port}`;
      const resolved = await within(
        resolveTarget(target.host, target.port, targetPolicy, lookup),
        left(),
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
      const proxyAddresses = await resolveProxy(proxy, left());

      const failures: IPColaError[] = [];
      for (const [index, address] of candidates.entries()) {
        const remaining = left();
        if (remaining <= 0) break;
        const budget =
          index === candidates.length - 1 ? remaining : Math.min(attemptTimeoutMs, remaining);
        const attemptEnds = performance.now() + budget;
        // exit_failed from here on is the proxy's fault: another target address cannot help.
        const socket = await connectToProxy(proxyAddresses, proxy.port, budget);
        try {
          return await negotiate(
            socket,
            proxy,
            { address, port: target.port },
            Math.max(1, attemptEnds - performance.now()),
          );
        } catch (error) {
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
    },
  };
}

/** The promise's value, or the timeout's error once ms have passed (the promise is left to settle). */
function within<T>(promise: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  if (ms <= 0) return Promise.reject(timeout());
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
