/**
 * Deliveries: one per event and subscribed endpoint, written in the transaction of the
 * change that caused the event, then claimed, attempted and settled by the deliverer.
 *
 * A claim is one UPDATE ... RETURNING over rows locked with SKIP LOCKED: it moves the
 * rows' next_attempt_at past the attempt's longest duration and gives them a fresh
 * claim token, so another server sees them as not due. Settling an attempt requires the
 * token, so a server whose claim lapsed (paused far longer than any attempt may take)
 * cannot record over the one that took the delivery over.
 */
import { randomBytes } from 'node:crypto';
import { newPublicId } from '../accounts/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import type { Listing } from './endpoints.ts';
import type { WebhookEvent } from './events.ts';

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

/** One try: the receiver's HTTP status, or why there was none. */
export interface Attempt {
  at: Date;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

export interface Delivery {
  id: string;
  endpointId: string;
  eventId: string;
  type: string;
  status: DeliveryStatus;
  nextAttemptAt: Date | null;
  createdAt: Date;
  attempts: Attempt[];
}

export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  url: string;
  sealedSecret: string;
  payload: string;
  attemptCount: number;
  firstAttemptAt: Date;
  claimToken: string;
}

export function newEvent(
  accountId: string,
  type: WebhookEvent['type'],
  data: Record<string, unknown>,
  now: Date,
): WebhookEvent {
  return {
    id: `evt_${randomBytes(12).toString('hex')}`,
    type,
    created: Math.floor(now.getTime() / 1000),
    account_id: accountId,
    data,
  };
}

/** Writes the event's delivery to each endpoint; the deliveries' ids. */
export async function writeDeliveries(
  db: Queryable,
  endpointIds: readonly string[],
  event: WebhookEvent,
  now: Date,
): Promise<string[]> {
  const payload = JSON.stringify(event);
  const ids: string[] = [];
  for (const endpointId of endpointIds) {
    const id = newPublicId();
    await db.query(
      `INSERT INTO webhook_deliveries
         (id, endpoint_id, event_id, type, payload, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $6)`,
      [id, endpointId, event.id, event.type, payload, now],
    );
    ids.push(id);
  }
  return ids;
}

/** The account's live endpoints subscribed to the type. */
export async function subscribedEndpoints(
  db: Queryable,
  accountId: string,
  type: string,
): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `SELECT id FROM webhook_endpoints
     WHERE account_id = $1 AND $2 = ANY (event_types) AND NOT disabled ORDER BY id`,
    [accountId, type],
  );
  return rows.map((row) => row.id);
}

/** Up to `limit` due deliveries of enabled endpoints, claimed until `claimedUntil`. */
export async function claimDue(
  db: Queryable,
  now: Date,
  claimedUntil: Date,
  limit: number,
): Promise<ClaimedDelivery[]> {
  const token = randomBytes(12).toString('base64url');
  const rows = await db.query<{
    id: string;
    endpoint_id: string;
    url: string;
    secret: string;
    payload: string;
    attempt_count: number;
    first_attempt_at: Date;
  }>(
    `UPDATE webhook_deliveries AS d
     SET claim_token = $3, next_attempt_at = $2, first_attempt_at = COALESCE(d.first_attempt_at, $1)
     FROM webhook_endpoints AS e
     WHERE e.id = d.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= $1
       AND d.id IN (
         SELECT due.id FROM webhook_deliveries AS due
         JOIN webhook_endpoints AS owner ON owner.id = due.endpoint_id
         WHERE due.status = 'pending' AND due.next_attempt_at <= $1 AND NOT owner.disabled
         ORDER BY due.next_attempt_at LIMIT $4
         FOR UPDATE OF due SKIP LOCKED)
     RETURNING d.id, d.endpoint_id, e.url, e.secret, d.payload, d.attempt_count, d.first_attempt_at`,
    [now, claimedUntil, token, limit],
  );
  return rows.map((row) => ({
    id: row.id,
    endpointId: row.endpoint_id,
    url: row.url,
    sealedSecret: row.secret,
    payload: row.payload,
    attemptCount: row.attempt_count,
    firstAttemptAt: row.first_attempt_at,
    claimToken: token,
  }));
}

/**
 * Records the attempt and what follows it (`next`: when to try again; null with
 * `status` succeeded or failed). False when the claim had lapsed: nothing is written.
 */
export async function settle(
  db: Database,
  claimed: ClaimedDelivery,
  attempt: Attempt,
  outcome: { status: DeliveryStatus; next: Date | null },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [row] = await tx.query<{ attempt_count: number }>(
      `UPDATE webhook_deliveries
       SET attempt_count = attempt_count + 1, status = $3, next_attempt_at = $4, claim_token = NULL
       WHERE id = $1 AND claim_token = $2 RETURNING attempt_count`,
      [claimed.id, claimed.claimToken, outcome.status, outcome.next],
    );
    if (!row) return false;
    await tx.query(
      `INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        claimed.id,
        row.attempt_count,
        attempt.at,
        attempt.statusCode,
        attempt.error,
        Math.round(attempt.durationMs),
      ],
    );
    return true;
  });
}

/** Gives a claimed delivery back, due at once, without an attempt (the server is stopping). */
export async function release(db: Queryable, claimed: ClaimedDelivery, now: Date): Promise<void> {
  await db.query(
    `UPDATE webhook_deliveries SET claim_token = NULL, next_attempt_at = $3
     WHERE id = $1 AND claim_token = $2`,
    [claimed.id, claimed.claimToken, now],
  );
}

interface DeliveryRow {
  id: string;
  endpoint_id: string;
  event_id: string;
  type: string;
  status: DeliveryStatus;
  next_attempt_at: Date | null;
  claim_token: string | null;
  created_at: Date;
}

/** An endpoint's deliveries, newest first, each with its attempts. */
export async function listDeliveries(
  db: Queryable,
  endpointId: string,
  listing: Listing,
): Promise<Delivery[]> {
  const rows = await db.query<DeliveryRow>(
    `SELECT id, endpoint_id, event_id, type, status, next_attempt_at, claim_token, created_at
     FROM webhook_deliveries
     WHERE endpoint_id = $1
       AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::text))
     ORDER BY created_at DESC, id DESC LIMIT $4`,
    [endpointId, listing.after?.createdAt ?? null, listing.after?.id ?? null, listing.limit],
  );
  const attempts = await db.query<{
    delivery_id: string;
    at: Date;
    status_code: number | null;
    error: string | null;
    duration_ms: number;
  }>(
    `SELECT delivery_id, at, status_code, error, duration_ms FROM webhook_attempts
     WHERE delivery_id = ANY ($1) ORDER BY delivery_id, attempt`,
    [rows.map((row) => row.id)],
  );
  return rows.map((row) => ({
    id: row.id,
    endpointId: row.endpoint_id,
    eventId: row.event_id,
    type: row.type,
    status: row.status,
    // While claimed, next_attempt_at is the claim's expiry: the attempt is happening now.
    nextAttemptAt: row.claim_token === null ? row.next_attempt_at : null,
    createdAt: row.created_at,
    attempts: attempts
      .filter((attempt) => attempt.delivery_id === row.id)
      .map((attempt) => ({
        at: attempt.at,
        statusCode: attempt.status_code,
        error: attempt.error,
        durationMs: attempt.duration_ms,
      })),
  }));
}
