/**
 * One CONNECT stream through a node: the request the hub sends and the wait for the
 * node's answer, turned into a stream or an error value with a tunnel code.
 */
import type { Duplex } from 'node:stream';
import {
  canonicalIp,
  formatAuthority,
  isValidHost,
  isValidPort,
  STREAM_LABEL_MAX_LENGTH,
} from '@ipcola/shared/protocol';
import { isTunnelErrorCode, type TunnelErrorCode, tunnelError } from '@ipcola/shared/tunnel-errors';
import type { Carrier, Opening } from './carriers/carrier.ts';
import type { OpenVerdict } from './stream-health.ts';

export interface StreamTarget {
  readonly host: string;
  readonly port: number;
  /** One of the node's announced exit IPs. */
  readonly exitIp: string;
  /** Request id for both ends' logs: visible ASCII, at most 128 characters. */
  readonly streamLabel?: string;
  /** Cancels the opening (not the stream once open); the promise rejects with the reason. */
  readonly signal?: AbortSignal;
}

/**
 * What a health probe opens: an SMTP port on a documentation address (RFC 5737), which
 * every agent refuses by its exit policy (SMTP stays refused even under --allow-target)
 * without touching the network. The answer proves that the node reads new streams and
 * runs them through the same path as a customer's.
 */
export const PROBE_TARGET = { host: '192.0.2.1', port: 25 } as const;

/** Refusals that are the target's fault: a node that answers them works. */
const TARGET_FAULTS: ReadonlySet<TunnelErrorCode> = new Set([
  'target_forbidden',
  'target_unreachable',
  'target_timeout',
]);

const LABEL = new RegExp(`^[\\x21-\\x7e]{1,${STREAM_LABEL_MAX_LENGTH}}$`);

/**
 * Checks a target against what the node announced; returns the canonical exit IP, or
 * the error to reject with.
 */
export function checkTarget(
  target: StreamTarget,
  nodeId: string,
  exitIps: ReadonlySet<string>,
): { exitIp: string } | { error: Error } {
  if (!isValidHost(target.host) || !isValidPort(target.port)) {
    return { error: tunnelError('target_unreachable', 'the target is not a valid host and port') };
  }
  const exitIp = canonicalIp(target.exitIp);
  if (exitIp === null || !exitIps.has(exitIp)) {
    return {
      error: tunnelError('exit_failed', `node ${nodeId} does not announce ${target.exitIp}`),
    };
  }
  if (target.streamLabel !== undefined && !LABEL.test(target.streamLabel)) {
    return {
      error: new TypeError(`streamLabel must be 1-${STREAM_LABEL_MAX_LENGTH} visible ASCII`),
    };
  }
  return { exitIp };
}

/** Asks the node for the stream; throws when the connection takes no new stream. */
export function requestConnect(carrier: Carrier, target: StreamTarget, exitIp: string): Opening {
  return carrier.open(formatAuthority(target.host, target.port), exitIp, target.streamLabel);
}

/**
 * Resolves with the stream when the node answers 200. Rejects with the node's code for
 * a refusal, exit_failed when the stream or the session dies first, target_timeout when
 * the node takes longer than timeoutMs, or the signal's reason when aborted; the stream
 * is cancelled in every case but success, so the node stops opening the egress.
 * `judged` hears how the node handled it (not called when the signal aborted it).
 */
export function awaitConnectAnswer(
  opening: Opening,
  target: StreamTarget,
  nodeId: string,
  timeoutMs: number,
  judged: (verdict: OpenVerdict) => void = () => {},
): Promise<Duplex> {
  const { signal } = target;
  // A plain timer and one listener on the caller's signal: a deadline signal joined to it
  // with AbortSignal.any cost two AbortSignals, a WeakRef and their GC on every new
  // tunnel (4% of the gateway's CPU in the bench's new-tunnel profile, 2026-12-06).
  const { stream } = opening;
  return new Promise<Duplex>((resolve, reject) => {
    let unlisten = () => {};
    const settle = (error: unknown, verdict?: OpenVerdict) => {
      clearTimeout(timer);
      if (verdict) judged(verdict);
      signal?.removeEventListener('abort', onAbort);
      unlisten();
      stream.off('close', onClose);
      if (error === undefined) {
        resolve(stream);
        return;
      }
      opening.cancel();
      reject(error);
    };
    const onAnswer = (status: number, header: unknown) => {
      if (status === 200) {
        settle(undefined, 'answered');
        return;
      }
      const code = isTunnelErrorCode(header) ? header : 'exit_failed';
      const where = formatAuthority(target.host, target.port);
      settle(
        tunnelError(code, `node ${nodeId} answered ${String(status)} for ${where}`),
        TARGET_FAULTS.has(code) ? 'answered' : 'failed',
      );
    };
    const onClose = () =>
      settle(
        tunnelError('exit_failed', `node ${nodeId} dropped the stream (code ${opening.resetCode})`),
        'failed',
      );
    // Whichever fires first: our own deadline is the node's fault, the caller's is not.
    const onAbort = () => settle(signal?.reason);
    const timer = setTimeout(
      () =>
        settle(
          tunnelError('target_timeout', `node ${nodeId} did not answer in ${timeoutMs} ms`),
          'failed',
        ),
      timeoutMs,
    );
    timer.unref();
    if (signal?.aborted) {
      settle(signal.reason);
      return;
    }
    unlisten = opening.whenAnswered(onAnswer);
    stream.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
