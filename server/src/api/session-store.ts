import { createHash } from 'node:crypto';
import session from 'express-session';
import type { Queryable } from '../store/index.ts';

export interface DatabaseSessionStoreOptions {
  /** Life of a session whose cookie has no expiry. Default one day. */
  defaultTtlMs?: number;
  /** How often (at most) a write also deletes expired rows. Default one minute. */
  pruneEveryMs?: number;
}

/** Expired rows deleted per prune: keeps one write from turning into a long purge. */
const PRUNE_BATCH = 1_000;

/**
 * express-session's store over the `sessions` table, the same on PGlite and PostgreSQL,
 * so several servers sharing a database share sessions. Rows are keyed by a SHA-256
 * digest of the session id: someone reading the table cannot use what they read.
 * Expired rows are never returned and are pruned, a batch at a time, on writes.
 */
export class DatabaseSessionStore extends session.Store {
  readonly #db: Queryable;
  readonly #defaultTtlMs: number;
  readonly #pruneEveryMs: number;
  #lastPrune = 0;

  constructor(db: Queryable, options: DatabaseSessionStoreOptions = {}) {
    super();
    this.#db = db;
    this.#defaultTtlMs = options.defaultTtlMs ?? 24 * 60 * 60 * 1000;
    this.#pruneEveryMs = options.pruneEveryMs ?? 60 * 1000;
  }

  override get(
    sid: string,
    callback: (error: unknown, session?: session.SessionData | null) => void,
  ): void {
    this.#db
      .query<{ data: session.SessionData }>(
        'SELECT data FROM sessions WHERE sid = $1 AND expires_at > now()',
        [digest(sid)],
      )
      .then(
        ([row]) => callback(null, row?.data ?? null),
        (error) => callback(error),
      );
  }

  override set(sid: string, data: session.SessionData, callback?: (error?: unknown) => void): void {
    const expires = data.cookie?.expires
      ? new Date(data.cookie.expires)
      : new Date(Date.now() + this.#defaultTtlMs);
    this.#db
      .query(
        `INSERT INTO sessions (sid, data, expires_at) VALUES ($1, $2::jsonb, $3)
         ON CONFLICT (sid) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at`,
        [digest(sid), JSON.stringify(data), expires],
      )
      .then(() => this.#pruneNowAndThen())
      .then(
        () => callback?.(),
        (error) => callback?.(error),
      );
  }

  override destroy(sid: string, callback?: (error?: unknown) => void): void {
    this.#db.query('DELETE FROM sessions WHERE sid = $1', [digest(sid)]).then(
      () => callback?.(),
      (error) => callback?.(error),
    );
  }

  /** Deletes a batch of expired rows; a failure is only a missed clean-up. */
  async prune(): Promise<void> {
    await this.#db.query(
      `DELETE FROM sessions WHERE sid IN (
         SELECT sid FROM sessions WHERE expires_at <= now() LIMIT ${PRUNE_BATCH})`,
    );
  }

  async #pruneNowAndThen(): Promise<void> {
    const now = Date.now();
    if (now - this.#lastPrune < this.#pruneEveryMs) return;
    this.#lastPrune = now;
    await this.prune().catch(() => {});
  }
}

function digest(sid: string): string {
  return createHash('sha256').update(sid).digest('hex');
}
