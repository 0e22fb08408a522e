/**
 * The promise's outcome, or the signal's reason once it aborts first. The promise is left
 * to settle: a value that arrives after the abort goes to `discard` (a late stream or
 * socket must be destroyed, or nobody ever would).
 */
export function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  discard: (late: T) => void = () => {},
): Promise<T> {
  if (signal.aborted) {
    promise.then(discard, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) discard(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * An AbortSignal that aborts with a TimeoutError after `ms`, like AbortSignal.timeout,
 * but whose timer is cleared once the wait is over: AbortSignal.timeout's timer keeps its
 * signal (and every AbortSignal.any built on it) alive until it fires, which held some
 * 4 KB per tunnel for the first 20 s of every one (bench: memory per idle tunnel).
 */
export function deadline(ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  // Like AbortSignal.timeout's: a pending wait does not keep the process alive.
  timer.unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * What deadlineOr listens to: an AbortSignal, or a lighter object that tells of an abort
 * the same way (an AbortController costs about 4 µs to make, and its listeners 3 µs more,
 * on Node 20: the gateway's watch on each client socket is such an object).
 */
export interface AbortNotice {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * Like `deadline(ms)` joined to `other` with AbortSignal.any, for one AbortController: the
 * signal aborts with a TimeoutError after `ms`, or with `other`'s reason when it aborts
 * first. AbortSignal.any costs a second signal and WeakRefs that the GC must trace, on
 * every new tunnel (with deadline(), 4% of the gateway's CPU in the bench's new-tunnel
 * profile, 2026-12-06). `timedOut` tells which came first; `clear` stops both watches.
 */
export function deadlineOr(
  ms: number,
  other: AbortNotice | undefined,
): { signal: AbortSignal; timedOut(): boolean; clear(): void } {
  const controller = new AbortController();
  let timedOut = false;
  // The reason is made only when it is needed: a DOMException captures a stack trace
  // (2% of the gateway's self time per new tunnel when made up front).
  const timer = setTimeout(() => {
    if (controller.signal.aborted) return;
    timedOut = true;
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  timer.unref();
  const onAbort = () => controller.abort(other?.reason);
  if (other?.aborted) onAbort();
  else other?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    clear() {
      clearTimeout(timer);
      other?.removeEventListener('abort', onAbort);
    },
  };
}
