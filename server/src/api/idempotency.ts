/**
 * Idempotency-Key on mutating requests (like Stripe's): the first request with a key runs
 * and its answer is kept a day; a retry with the same key and the same request gets that
 * answer again (`Idempotent-Replayed: true`) without doing the work twice; the same key
 * with another request, or while the first still runs, is `idempotency_conflict` (409).
 *
 * Answers are sealed at rest: creating or rotating a key answers with its secret.
 * An answer of 500 or more is not kept, so the request may be retried. A client that
 * leaves before its answer is written frees the key too (the work may then run twice:
 * there is no answer to give).
 */
import { createHash } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { ipcolaError } from '../errors/index.ts';
import type { Queryable } from '../store/index.ts';

/** Seals text at rest, bound to a label (here the account and the key). */
export interface Sealer {
  seal(plaintext: string, boundTo: string): string;
  open(sealed: string, boundTo: string): string;
}

const KEY = /^[\x21-\x7e]{1,255}$/;
const PRUNE_EVERY_MS = 60_000;

export function idempotency(
  db: Queryable,
  sealer: Sealer,
  accountOf: (res: Response) => string,
  onError: (error: unknown) => void,
): RequestHandler {
  let prunedAt = 0;

  return async (req, res, next) => {
    const key = idempotencyKeyOf(req);
    if (key === undefined) return next();
    const accountId = accountOf(res);
    const label = `${accountId}:${key}`;
    const requestHash = createHash('sha256')
      .update(`${req.method} ${req.originalUrl}\n${JSON.stringify(req.body ?? null)}`)
      .digest('base64url');

    if (Date.now() - prunedAt > PRUNE_EVERY_MS) {
      prunedAt = Date.now();
      db.query(`DELETE FROM idempotency_keys WHERE created_at < now() - interval '1 day'`).catch(
        onError,
      );
    }

    const claimed = await db.query(
      `INSERT INTO idempotency_keys (account_id, key, request_hash) VALUES ($1, $2, $3)
       ON CONFLICT (account_id, key) DO NOTHING RETURNING key`,
      [accountId, key, requestHash],
    );
    if (claimed.length === 0) {
      const [row] = await db.query<{
        request_hash: string;
        status: number | null;
        answer: string | null;
      }>(
        'SELECT request_hash, status, answer FROM idempotency_keys WHERE account_id = $1 AND key = $2',
        [accountId, key],
      );
      if (row && row.request_hash !== requestHash) {
        throw ipcolaError(
          'idempotency_conflict',
          'This Idempotency-Key was used for another request',
        );
      }
      if (!row || row.status === null || row.answer === null) {
        throw ipcolaError(
          'idempotency_conflict',
          'The request with this Idempotency-Key is still running',
        );
      }
      const answer = JSON.parse(sealer.open(row.answer, label)) as {
        contentType: string | null;
        body: string;
      };
      res.status(row.status).setHeader('Idempotent-Replayed', 'true');
      if (answer.contentType) res.setHeader('Content-Type', answer.contentType);
      res.end(answer.body);
      return;
    }

    // The first request: keep whatever the handler (or the error handler) sends.
    let body = '';
    const send = res.send.bind(res);
    res.send = (chunk?: unknown) => {
      if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) body = chunk.toString();
      return send(chunk);
    };
    const forget = () =>
      db
        .query('DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2', [accountId, key])
        .catch(onError);
    res.once('close', () => {
      if (!res.writableFinished || res.statusCode >= 500) {
        void forget();
        return;
      }
      const contentType = res.getHeader('Content-Type');
      const sealed = sealer.seal(
        JSON.stringify({
          contentType: contentType === undefined ? null : String(contentType),
          body,
        }),
        label,
      );
      db.query(
        'UPDATE idempotency_keys SET status = $3, answer = $4 WHERE account_id = $1 AND key = $2',
        [accountId, key, res.statusCode, sealed],
      ).catch(onError);
    });
    next();
  };
}

/** The request's Idempotency-Key, checked for form; undefined when it has none. */
export function idempotencyKeyOf(req: Request): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || !KEY.test(key)) {
    throw ipcolaError('invalid_request', 'Idempotency-Key must be 1-255 visible ASCII characters');
  }
  return key;
}

/**
 * Signup retries. There is no account before a signup, and its answer (a session) cannot
 * be replayed to a client that may never have got the cookie, so a signup with a key is
 * remembered with its account, by email only (never the password), in the transaction that
 * creates it. A retry that finds the email taken is then a retry of that signup when the
 * key matches and the password signs in: it is answered like the first, with a new session.
 */
export interface SignupRetries {
  /** Runs inside the signup's transaction. */
  remember(tx: Queryable, accountId: string, key: string, email: string): Promise<void>;
  isRetry(accountId: string, key: string, email: string): Promise<boolean>;
}

export function signupRetries(db: Queryable): SignupRetries {
  const hash = (email: string) =>
    createHash('sha256').update(`signup\n${email.toLowerCase()}`).digest('base64url');
  return {
    async remember(tx, accountId, key, email) {
      // The status marks it finished; the answer is left empty: a retry signs in afresh.
      await tx.query(
        `INSERT INTO idempotency_keys (account_id, key, request_hash, status, answer)
         VALUES ($1, $2, $3, 201, NULL)`,
        [accountId, key, hash(email)],
      );
    },
    async isRetry(accountId, key, email) {
      const rows = await db.query(
        `SELECT 1 FROM idempotency_keys
         WHERE account_id = $1 AND key = $2 AND request_hash = $3
           AND created_at > now() - interval '1 day'`,
        [accountId, key, hash(email)],
      );
      return rows.length > 0;
    },
  };
}
