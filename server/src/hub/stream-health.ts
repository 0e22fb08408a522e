/**
 * Whether a node's stream opens work: a circuit breaker per node connection.
 *
 * A node that answers PINGs can still fail every stream (a broken egress, a wedged
 * stream handler): each such open costs a customer an `exit_failed`. After
 * `failureLimit` failed opens in a row the node leaves the pool; it is probed after a
 * back-off that doubles with each ejection and each failed probe (capped), and comes
 * back when a probe is answered. Only a stream the node answered resets the back-off;
 * a node brought back by a probe leaves again at its next failure (half-open).
 *
 * Why 3: a healthy node fails an open only by bad luck (a stream caught in a reset, a
 * restart); three in a row keeps a false ejection at p³ (one in a million opens at
 * p = 1 %), and a broken node costs at most three customers' connections before it
 * leaves.
 */

export interface StreamHealthPolicy {
  /** Failed opens in a row that take the node out of the pool. */
  readonly failureLimit: number;
  /** Wait before the first probe after an ejection. */
  readonly backoffMs: number;
  /** Longest wait between probes. */
  readonly backoffMaxMs: number;
}

export const DEFAULT_STREAM_HEALTH: StreamHealthPolicy = {
  failureLimit: 3,
  backoffMs: 5_000,
  backoffMaxMs: 300_000,
};

/**
 * How a node handled a stream open. `answered`: it said 200, or refused for a reason
 * that is the target's (target_forbidden, target_unreachable, target_timeout), which a
 * working node does. `failed`: it answered exit_failed, reset the stream, or did not
 * answer in time.
 */
export type OpenVerdict = 'answered' | 'failed';

export class StreamHealth {
  readonly #policy: StreamHealthPolicy;
  #failuresInARow = 0;
  /** Ejections and failed probes since the last stream the node answered. */
  #strikes = 0;
  #ejected = false;

  constructor(policy: StreamHealthPolicy) {
    this.#policy = policy;
  }

  get ejected(): boolean {
    return this.#ejected;
  }

  /** Counts one open; true when this failure takes the node out of the pool. */
  record(verdict: OpenVerdict): boolean {
    // While out, only probes decide (opens started before the ejection may still end).
    if (this.#ejected) return false;
    if (verdict === 'answered') {
      this.#failuresInARow = 0;
      this.#strikes = 0;
      return false;
    }
    this.#failuresInARow += 1;
    if (this.#failuresInARow < this.#policy.failureLimit) return false;
    this.#ejected = true;
    this.#strikes += 1;
    return true;
  }

  /** Counts a probe; true when it brings the node back. */
  probed(verdict: OpenVerdict): boolean {
    if (!this.#ejected) return false;
    if (verdict === 'failed') {
      this.#strikes += 1;
      return false;
    }
    this.#ejected = false;
    this.#failuresInARow = this.#policy.failureLimit - 1;
    return true;
  }

  /** How long to wait before the next probe. */
  backoffMs(): number {
    const { backoffMs, backoffMaxMs } = this.#policy;
    return Math.min(backoffMaxMs, backoffMs * 2 ** Math.max(0, this.#strikes - 1));
  }
}
