import type { Duplex } from 'node:stream';
import { type AbortNotice, deadlineOr, untilAborted } from '@ipcola/shared/protocol';
import { ipcolaError } from '../errors/index.ts';
import type { SessionTable } from '../store/index.ts';
import type { Admission } from './access.ts';
import type { Targeting } from './credentials.ts';
import type { Exit, ExitIndex } from './exit-index.ts';
import { asProxyRefusal } from './refusal.ts';

export interface Target {
  host: string;
  port: number;
}

export interface Upstream {
  stream: Duplex;
  exit: Exit;
  /** The sticky session id, when the request named one. */
  sessionId: string | null;
  /** Stops counting this stream against its exit's load; safe to call twice. */
  release(): void;
}

export interface ConnectorOptions {
  exits: ExitIndex;
  sessions: SessionTable;
  /**
   * Opens a stream to target through the exit's node; rejects with an error carrying a
   * tunnel `code`. `signal` aborts when the gateway gives up (its open timeout, or the
   * client went away): whatever is still opening below must stop.
   */
  openStream(exit: Exit, target: Target, signal: AbortSignal): Promise<Duplex>;
  /** Upper bound for the whole open (GATEWAY_OPEN_TIMEOUT_MS says why it is the longest). */
  openTimeoutMs: number;
  /** How long each exit selection took, in seconds. */
  onSelect?: (seconds: number) => void;
}

export interface Connector {
  /** The exit for a connection: the session's pinned one, or a fresh pick. */
  choose(admission: Admission): Promise<Exit>;
  /**
   * Opens a stream to target through a chosen exit. `clientGone` aborts when the client
   * went away: the open stops, and rejects with its reason.
   */
  openThrough(
    exit: Exit,
    target: Target,
    clientGone?: AbortNotice,
  ): Promise<{ stream: Duplex; release(): void }>;
  /**
   * The exit to take instead after an open failed with `error`: a fresh pick, once, when
   * the instance holding the exit vanished (nothing reached the target); a sticky session
   * is told its exit is gone; any other failure is thrown again.
   */
  instead(admission: Admission, error: unknown): Promise<Exit>;
  /** choose() then openThrough(), and openThrough() once more on instead()'s exit. */
  open(admission: Admission, target: Target, clientGone?: AbortNotice): Promise<Upstream>;
  /** The exit a sticky session is pinned to now, if any (for tests and the leases API). */
  sessionExit(keyId: string, sessionId: string): Promise<Exit | null>;
  /** Pins a new sticky session to a matching exit now (a lease); throws no_exit_available. */
  pin(keyId: string, targeting: Targeting, session: { id: string; ttlMs: number }): Promise<Exit>;
  /** A session's exit (null when that exit went away) and the time it has left; null when none. */
  inspect(keyId: string, sessionId: string): Promise<{ exit: Exit | null; ttlMs: number } | null>;
  /** Renews a session for ttlMs; false when it had lapsed. */
  renew(keyId: string, sessionId: string, ttlMs: number): Promise<boolean>;
  release(keyId: string, sessionId: string): Promise<void>;
}

/** Chooses the exit for a connection (sticky or spread) and opens the stream through it. */
export function createConnector(options: ConnectorOptions): Connector {
  const { exits, sessions, onSelect } = options;
  const select = (targeting: Admission['credentials']['targeting']) => {
    if (!onSelect) return exits.select(targeting);
    const started = performance.now();
    const exit = exits.select(targeting);
    onSelect((performance.now() - started) / 1000);
    return exit;
  };
  const sessionKey = (keyId: string, sessionId: string) => `${keyId}:${sessionId}`;

  const choose = async (admission: Admission): Promise<Exit> => {
    const { credentials, key } = admission;
    const { session, targeting } = credentials;
    if (!session) {
      const exit = select(targeting);
      if (!exit) throw ipcolaError('no_exit_available');
      return exit;
    }
    const name = sessionKey(key.id, session.id);
    const pinned = await sessions.touch(name, session.ttlMs);
    if (pinned !== null) {
      // Moving a session silently would break the customer's notion of one identity.
      const exit = exits.get(pinned);
      if (!exit) throw ipcolaError('session_exit_gone');
      return exit;
    }
    const candidate = select(targeting);
    if (!candidate) throw ipcolaError('no_exit_available');
    // Two first requests of one session may race: whichever claim lands first wins for both.
    const claimed = await sessions.claim(name, candidate.id, session.ttlMs);
    const exit = exits.get(claimed);
    if (!exit) throw ipcolaError('session_exit_gone');
    return exit;
  };

  const openThrough = async (exit: Exit, target: Target, clientGone?: AbortNotice) => {
    const release = exits.acquire(exit.id);
    const { signal: giveUp, timedOut, clear } = deadlineOr(options.openTimeoutMs, clientGone);
    const started = performance.now();
    try {
      // Raced here too, so that an opener that does not listen still cannot hold us.
      const stream = await untilAborted(options.openStream(exit, target, giveUp), giveUp, (late) =>
        late.destroy(),
      );
      exits.report(exit.id, 'opened', performance.now() - started);
      return { stream, release };
    } catch (error) {
      release();
      if (giveUp.aborted && timedOut()) {
        throw ipcolaError('target_timeout', undefined, { cause: error });
      }
      if (giveUp.aborted) throw giveUp.reason;
      const refusal = asProxyRefusal(error);
      // Only the exit's own failures count against it; a target's refusal is no fault of it.
      exits.report(exit.id, refusal.code === 'exit_failed' ? 'exit_failed' : 'target_failed');
      throw refusal;
    } finally {
      clear();
    }
  };

  // The instance holding the exit is gone (it crashed): nothing reached the target, and
  // its exits already left the index. A connection free to take any exit takes another
  // once; a sticky one is told its exit is gone.
  const instead = async (admission: Admission, error: unknown): Promise<Exit> => {
    if (!heldByLostInstance(error)) throw error;
    if (admission.credentials.session) {
      throw ipcolaError('session_exit_gone', undefined, { cause: error });
    }
    // The same exit is fine: its agent may have landed on a live instance meanwhile (an
    // agent moves within about 150 ms of a kill; refusing the same exit is the likely
    // cause of a 502 exit_failed seen then). Still held by the lost instance, it fails
    // the same way, once.
    return choose(admission);
  };

  return {
    choose,
    openThrough,
    instead,
    async open(admission, target, clientGone) {
      const sessionId = admission.credentials.session?.id ?? null;
      const exit = await choose(admission);
      try {
        const { stream, release } = await openThrough(exit, target, clientGone);
        return { stream, exit, sessionId, release };
      } catch (error) {
        const other = await instead(admission, error);
        const { stream, release } = await openThrough(other, target, clientGone);
        return { stream, exit: other, sessionId, release };
      }
    },
    async sessionExit(keyId, sessionId) {
      const pinned = await sessions.peek(sessionKey(keyId, sessionId));
      return pinned === null ? null : (exits.get(pinned) ?? null);
    },
    async pin(keyId, targeting, session) {
      const candidate = select(targeting);
      if (!candidate) throw ipcolaError('no_exit_available');
      const claimed = await sessions.claim(
        sessionKey(keyId, session.id),
        candidate.id,
        session.ttlMs,
      );
      const exit = exits.get(claimed);
      if (!exit) throw ipcolaError('session_exit_gone');
      return exit;
    },
    async inspect(keyId, sessionId) {
      const pinned = await sessions.inspect(sessionKey(keyId, sessionId));
      return pinned && { exit: exits.get(pinned.value) ?? null, ttlMs: pinned.ttlMs };
    },
    async renew(keyId, sessionId, ttlMs) {
      return (await sessions.touch(sessionKey(keyId, sessionId), ttlMs)) !== null;
    },
    release: (keyId, sessionId) => sessions.release(sessionKey(keyId, sessionId)),
  };
}

/** Whether an open failed because the instance holding its exit did not answer at all. */
function heldByLostInstance(error: unknown): boolean {
  for (let at = error, depth = 0; at && depth < 4; depth++) {
    if ((at as { holderLost?: unknown }).holderLost === true) return true;
    at = (at as { cause?: unknown }).cause;
  }
  return false;
}
