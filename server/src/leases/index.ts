/**
 * Leases: sticky sessions made through the API before any traffic. A lease pins one exit
 * IP (chosen now by the gateway's selection) under the session name its proxy username
 * carries; use renews it, and it lapses after its TTL unused, exactly like a session
 * named in a username. The pin lives in hot state; the database remembers who made it.
 */
import { randomBytes } from 'node:crypto';
import type { Targeting } from '@ipcola/shared/targeting';
import type { Queryable } from '../store/index.ts';

/** A lease picks its exit as a proxy username would. */
export type LeaseTargeting = Targeting;

export interface LeasedExit {
  ip: string;
  country?: string;
  city?: string;
  type: string;
}

/** The gateway's sticky sessions, as the leases need them (their exits may carry more). */
export interface LeaseSessions {
  pin(
    keyId: string,
    targeting: LeaseTargeting,
    session: { id: string; ttlMs: number },
  ): Promise<LeasedExit>;
  inspect(
    keyId: string,
    sessionId: string,
  ): Promise<{ exit: LeasedExit | null; ttlMs: number } | null>;
  renew(keyId: string, sessionId: string, ttlMs: number): Promise<boolean>;
  release(keyId: string, sessionId: string): Promise<void>;
}

export interface Lease {
  id: string;
  keyId: string;
  targeting: LeaseTargeting;
  ttlSeconds: number;
  createdAt: Date;
  /** Pinned now; false once released or lapsed. */
  active: boolean;
  /** The exit it is pinned to; null when not active or when that exit went away. */
  exit: LeasedExit | null;
  /** When it lapses unless used or renewed; null when not active. */
  expiresAt: Date | null;
}

interface LeaseRow {
  id: string;
  key_id: string;
  targeting: LeaseTargeting;
  ttl_seconds: number;
  created_at: Date;
  released_at: Date | null;
}

const COLUMNS = 'id, key_id, targeting, ttl_seconds, created_at, released_at';

export interface Leases {
  /** Pins a new session for the key (which must be the account's); null when it is not. */
  create(
    accountId: string,
    keyId: string,
    targeting: LeaseTargeting,
    ttlSeconds: number,
  ): Promise<Lease | null>;
  get(accountId: string, leaseId: string): Promise<Lease | null>;
  list(
    accountId: string,
    page: { after?: { createdAt: Date; id: string }; limit: number },
  ): Promise<Lease[]>;
  /** Renews for ttlSeconds (default: the lease's own); null when not the account's or lapsed. */
  renew(accountId: string, leaseId: string, ttlSeconds?: number): Promise<Lease | null>;
  /** Ends it now; false when not the account's or already released. */
  release(accountId: string, leaseId: string): Promise<boolean>;
}

export function createLeases(db: Queryable, sessions: LeaseSessions, now = Date.now): Leases {
  const view = async (row: LeaseRow, pinnedExit?: LeasedExit): Promise<Lease> => {
    const live = row.released_at ? null : await sessions.inspect(row.key_id, row.id);
    return {
      id: row.id,
      keyId: row.key_id,
      targeting: row.targeting,
      ttlSeconds: row.ttl_seconds,
      createdAt: row.created_at,
      active: live !== null,
      exit: live ? leasedExit(live.exit ?? pinnedExit ?? null) : null,
      expiresAt: live ? new Date(now() + live.ttlMs) : null,
    };
  };
  const row = async (accountId: string, leaseId: string) =>
    (
      await db.query<LeaseRow>(`SELECT ${COLUMNS} FROM leases WHERE id = $1 AND account_id = $2`, [
        leaseId,
        accountId,
      ])
    )[0];

  return {
    async create(accountId, keyId, targeting, ttlSeconds) {
      const owned = await db.query(
        'SELECT 1 FROM api_keys WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL',
        [keyId, accountId],
      );
      if (owned.length === 0) return null;
      const id = randomBytes(8).toString('hex');
      // Pinned first: a lease no exit matches is refused and leaves no row behind.
      const exit = await sessions.pin(keyId, targeting, { id, ttlMs: ttlSeconds * 1000 });
      const [created] = await db.query<LeaseRow>(
        `INSERT INTO leases (id, account_id, key_id, targeting, ttl_seconds)
         VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
        [id, accountId, keyId, JSON.stringify(targeting), ttlSeconds],
      );
      if (!created) throw new Error('createLease: the inserted row is missing');
      return view(created, exit);
    },
    async get(accountId, leaseId) {
      const found = await row(accountId, leaseId);
      return found ? view(found) : null;
    },
    async list(accountId, page) {
      const rows = await db.query<LeaseRow>(
        `SELECT ${COLUMNS} FROM leases
         WHERE account_id = $1 AND released_at IS NULL
           AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::text))
         ORDER BY created_at, id LIMIT $4`,
        [accountId, page.after?.createdAt ?? null, page.after?.id ?? null, page.limit],
      );
      return Promise.all(rows.map((found) => view(found)));
    },
    async renew(accountId, leaseId, ttlSeconds) {
      const found = await row(accountId, leaseId);
      if (!found || found.released_at) return null;
      const ttl = ttlSeconds ?? found.ttl_seconds;
      if (!(await sessions.renew(found.key_id, found.id, ttl * 1000))) return null;
      return view(found);
    },
    async release(accountId, leaseId) {
      const [released] = await db.query<LeaseRow>(
        `UPDATE leases SET released_at = now()
         WHERE id = $1 AND account_id = $2 AND released_at IS NULL RETURNING ${COLUMNS}`,
        [leaseId, accountId],
      );
      if (!released) return false;
      await sessions.release(released.key_id, released.id);
      return true;
    },
  };
}

/** What a lease shows of its exit: never the node behind it. */
function leasedExit(exit: LeasedExit | null): LeasedExit | null {
  if (!exit) return null;
  const { ip, country, city, type } = exit;
  return {
    ip,
    ...(country !== undefined && { country }),
    ...(city !== undefined && { city }),
    type,
  };
}
