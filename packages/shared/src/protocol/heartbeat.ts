/**
 * PING heart-beats over the tunnel (HTTP/2's or the multiplexer's), run by both ends:
 * the hub to find frozen or vanished nodes, the agent to find a hub that vanished
 * without a FIN (NAT timeouts, power cuts). TCP alone would notice only after
 * minutes, if at all.
 */

/** A tunnel connection that can PING its peer: an HTTP/2 session or a MuxSession. */
export interface Pingable {
  readonly destroyed: boolean;
  readonly closed: boolean;
  /** performance.now() when the peer last sent anything, where the connection knows. */
  readonly lastHeardAt?: number;
  ping(callback: (error: Error | null, durationMs: number) => void): boolean;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

export interface HeartbeatOptions {
  readonly intervalMs: number;
  /** How long one PING may go unanswered before the peer is declared dead. */
  readonly timeoutMs: number;
  /** Called once, when a PING went unanswered; the caller destroys the session. */
  readonly onDead: (error: Error) => void;
  /** Called with each measured round trip. */
  readonly onRtt?: (rttMs: number) => void;
  /**
   * PING only after a whole interval in which the peer sent nothing (where the connection
   * says when it last heard from it): a peer that PINGs us itself, or sends data, is
   * alive. The agent's beat: its hub PINGs it every 2 s, and answering the agents' own
   * PINGs as well cost a hub of 10,000 idle v2 nodes 29% more CPU (bench, 2026-12-06).
   * A dead peer is then found within two intervals and the timeout.
   */
  readonly whenSilent?: boolean;
}

export interface Heartbeat {
  stop(): void;
}

export class PingTimeoutError extends Error {
  readonly code = 'ping_timeout';
  constructor(timeoutMs: number) {
    super(`no PING answer within ${timeoutMs} ms`);
    this.name = 'PingTimeoutError';
  }
}

/**
 * Sends a PING every intervalMs (never two at once) and gives up on the peer when an
 * answer takes longer than timeoutMs. A dead peer is found within intervalMs + timeoutMs.
 * The PING answer queues behind whatever the peer is sending, so timeoutMs must allow
 * for a full socket buffer on a slow uplink.
 */
export function startHeartbeat(session: Pingable, options: HeartbeatOptions): Heartbeat {
  let stopped = false;
  let deadline: NodeJS.Timeout | undefined;

  const stop = () => {
    stopped = true;
    clearInterval(ticker);
    if (deadline) clearTimeout(deadline);
    session.off('close', stop);
  };

  const beat = () => {
    if (stopped || deadline || session.destroyed || session.closed) return;
    const heardAt = session.lastHeardAt;
    if (options.whenSilent && heardAt !== undefined) {
      if (performance.now() - heardAt < options.intervalMs) return;
    }
    deadline = setTimeout(() => {
      stop();
      options.onDead(new PingTimeoutError(options.timeoutMs));
    }, options.timeoutMs);
    deadline.unref();
    // ping() returns false only with too many PINGs in flight, which one at a time
    // never reaches; the deadline would give the same verdict anyway.
    session.ping((error, durationMs) => {
      if (stopped) return;
      clearTimeout(deadline);
      deadline = undefined;
      if (!error) options.onRtt?.(durationMs);
    });
  };

  const ticker = setInterval(beat, options.intervalMs);
  ticker.unref();
  session.once('close', stop);
  return { stop };
}
