/**
 * Egress: the agent's connection to a customer's target, from one of its exit IPs.
 *
 * 1. `resolveTarget` normalises the host, checks the port, resolves names once and
 *    checks every address against the exit policy.
 * 2. Only those checked addresses are dialled, as IP literals: nothing is resolved a
 *    second time (a second answer could point somewhere the policy never saw). The
 *    socket is also given a `lookup` that refuses, so a host name can never slip
 *    through to Node's resolver.
 * 3. The socket is bound to the leased exit IP (`localAddress`); addresses of the other
 *    family cannot be reached from it and are skipped.
 * 4. Candidates are tried one after the other, in the resolver's order, each with its
 *    own timeout (the last one gets whatever is left), all within one overall connect
 *    timeout. This is Happy-Eyeballs-lite: sequential, not raced, which is enough
 *    because a single exit IP fixes the family anyway.
 *
 * Failures are TunnelError values whose `code` the hub passes on to the customer:
 * target_forbidden (policy), target_unreachable (DNS failure, refused, reset, no
 * route), target_timeout (no answer in time) and exit_failed (the exit's own fault,
 * e.g. its exit IP is no longer configured). Classification uses error codes only.
 */
import {
  isIP,
  type LookupFunction,
  connect as netConnect,
  Socket,
  type TcpNetConnectOpts,
} from 'node:net';
import { plainDestination } from '@ipcola/shared/addresses';
import { type ExitPolicy, type LookupAll, resolveTarget } from '@ipcola/shared/exit-policy';
import {
  CONNECT_ATTEMPT_TIMEOUT_MS,
  CONNECT_TIMEOUT_MS,
  untilAborted,
} from '@ipcola/shared/protocol';
import { type TunnelErrorCode, tunnelError } from '@ipcola/shared/tunnel-errors';
import type { EgressTarget, OpenEgress } from './tunnel/index.ts';

/** TCP keep-alive probes start after this much silence (and detect a dead target). */
export const EGRESS_KEEPALIVE_DELAY_MS = 30_000;

export interface EgressOptions {
  readonly policy: ExitPolicy;
  readonly connectTimeoutMs?: number;
  readonly attemptTimeoutMs?: number;
  /** DNS lookup, replaceable in tests; defaults to dns.promises.lookup. */
  readonly lookup?: LookupAll;
  /** Makes the (not yet connected) socket; replaceable in tests; defaults to net.connect. */
  readonly connect?: (options: TcpNetConnectOpts) => Socket;
}

/** Errors that mean the target, or the way to it, said no. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
]);
/** The kernel gave up waiting (SYN retries exhausted): a timeout, whoever counted it. */
const TIMEOUT_CODES = new Set(['ETIMEDOUT']);

/** Returned to net.connect so that a host name can never reach the resolver. */
const refuseLookup: LookupFunction = (hostname, _options, callback) => {
  const error = Object.assign(new Error(`egress never resolves names (${hostname})`), {
    code: 'EGRESS_NO_LOOKUP',
  });
  callback(error, '', 4);
};

/** Builds the `openEgress` function connectToHub calls for each customer stream. */
export function createEgress(options: EgressOptions): OpenEgress {
  const connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? CONNECT_ATTEMPT_TIMEOUT_MS;
  for (const [name, value] of [
    ['connectTimeoutMs', connectTimeoutMs],
    ['attemptTimeoutMs', attemptTimeoutMs],
  ] as const) {
    if (!(Number.isFinite(value) && value > 0)) {
      throw new TypeError(`${name} must be a positive number of milliseconds`);
    }
  }
  const settings: Settings = {
    policy: options.policy,
    connectTimeoutMs,
    attemptTimeoutMs,
    lookup: options.lookup,
    connect: options.connect ?? netConnect,
  };
  return (target, signal) => openEgress(settings, target, signal);
}

interface Settings {
  readonly policy: ExitPolicy;
  readonly connectTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly lookup: LookupAll | undefined;
  readonly connect: (options: TcpNetConnectOpts) => Socket;
}

async function openEgress(
  settings: Settings,
  target: EgressTarget,
  signal: AbortSignal,
): Promise<Socket> {
  const { host, port, exitIp } = target;
  const where = `${host}:${port}`;
  const exitFamily = isIP(exitIp);
  if (exitFamily === 0) throw tunnelError('exit_failed', `exit IP ${exitIp} is not an address`);

  if (signal.aborted) throw cancelled(where, signal.reason);
  // One signal ends everything in flight: the hub's cancellation or our deadline. The
  // deadline is a timer of our own, not AbortSignal.timeout, whose timer does not keep
  // the process up: a name lookup pending in a promise alone would not either.
  const deadline = performance.now() + settings.connectTimeoutMs;
  const late = new AbortController();
  const timer = setTimeout(() => late.abort(), settings.connectTimeoutMs);
  const stop = AbortSignal.any([signal, late.signal]);

  try {
    // getaddrinfo cannot be cancelled: its answer is dropped if we stopped meanwhile.
    const resolved = await untilAborted(
      resolveTarget(host, port, settings.policy, settings.lookup),
      stop,
    );
    if (!resolved.ok) throw tunnelError(resolved.code, resolved.reason);

    const candidates = resolved.addresses
      .map(plainDestination)
      .filter((address) => isIP(address) === exitFamily);
    if (candidates.length === 0) {
      throw tunnelError(
        'target_unreachable',
        `${host} has no IPv${exitFamily} address to reach from exit IP ${exitIp} (it resolved to ${resolved.addresses.join(', ')})`,
      );
    }

    const failures: AttemptFailure[] = [];
    for (const [index, address] of candidates.entries()) {
      const remaining = deadline - performance.now();
      const last = index === candidates.length - 1;
      const timeoutMs = Math.max(
        1,
        last ? remaining : Math.min(settings.attemptTimeoutMs, remaining),
      );
      const outcome = await attempt(settings, { address, port, exitIp, timeoutMs }, stop);
      if (outcome instanceof Socket) return outcome;
      failures.push(outcome);
    }
    throw classify(where, exitIp, failures);
  } catch (error) {
    // Our deadline or the hub's cancellation, whichever came first: report that, not
    // what it interrupted.
    if (!stop.aborted) throw error;
    if (stop.reason === late.signal.reason) {
      throw tunnelError(
        'target_timeout',
        `could not connect to ${where} within ${settings.connectTimeoutMs} ms`,
      );
    }
    throw cancelled(where, signal.reason);
  } finally {
    clearTimeout(timer);
  }
}

interface AttemptFailure {
  readonly address: string;
  /** The socket error's code, or 'attempt_timeout' when our per-attempt timer fired. */
  readonly code: string;
  readonly error: Error | undefined;
}

/**
 * One connect. Resolves with the connected socket or with why it failed; rejects only
 * when `stop` fired (the caller reports the stop reason). The socket is destroyed on
 * every path but success, so a connect that completes too late goes nowhere.
 */
function attempt(
  settings: Settings,
  to: { address: string; port: number; exitIp: string; timeoutMs: number },
  stop: AbortSignal,
): Promise<Socket | AttemptFailure> {
  return new Promise((resolve, reject) => {
    if (stop.aborted) {
      reject(stop.reason);
      return;
    }
    let socket: Socket;
    try {
      socket = settings.connect({
        host: to.address,
        port: to.port,
        localAddress: to.exitIp,
        family: isIP(to.address),
        lookup: refuseLookup,
        allowHalfOpen: true,
      });
    } catch (error) {
      // Synchronous refusals (an invalid option) are the exit's own fault.
      resolve({ address: to.address, code: 'EGRESS_SETUP', error: error as Error });
      return;
    }
    const finish = () => {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
      socket.off('connect', onConnect);
      socket.off('error', onError);
    };
    const onConnect = () => {
      finish();
      socket.setNoDelay(true);
      socket.setKeepAlive(true, EGRESS_KEEPALIVE_DELAY_MS);
      resolve(socket);
    };
    const onError = (error: Error) => {
      finish();
      socket.destroy();
      resolve({ address: to.address, code: errorCode(error), error });
    };
    const onStop = () => {
      finish();
      // The error a destroyed-while-connecting socket may still emit has no listener.
      socket.on('error', () => {});
      socket.destroy();
      reject(stop.reason);
    };
    const timer = setTimeout(() => {
      finish();
      socket.on('error', () => {});
      socket.destroy();
      resolve({ address: to.address, code: 'attempt_timeout', error: undefined });
    }, to.timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', onError);
    stop.addEventListener('abort', onStop, { once: true });
  });
}

/**
 * The code for a target none of whose addresses took the connection. A definite "no"
 * from any address (refused, reset, no route) makes it unreachable; only timeouts make
 * it a timeout; anything else (the exit IP cannot be bound, out of file descriptors)
 * is the exit failing, so the gateway may try another exit.
 */
function classify(where: string, exitIp: string, failures: readonly AttemptFailure[]): Error {
  const codes = failures.map((failure) => failure.code);
  let code: TunnelErrorCode;
  if (codes.some((c) => UNREACHABLE_CODES.has(c))) code = 'target_unreachable';
  else if (codes.every((c) => c === 'attempt_timeout' || TIMEOUT_CODES.has(c)))
    code = 'target_timeout';
  else code = 'exit_failed';
  const detail = failures.map((failure) => `${failure.address}: ${failure.code}`).join(', ');
  return tunnelError(code, `could not connect to ${where} from ${exitIp} (${detail})`, {
    cause: failures.at(-1)?.error,
  });
}

function cancelled(where: string, reason: unknown): Error {
  return tunnelError('exit_failed', `connecting to ${where} was cancelled by the hub`, {
    cause: reason,
  });
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const { code } = error;
    if (typeof code === 'string') return code;
  }
  return 'unknown';
}
