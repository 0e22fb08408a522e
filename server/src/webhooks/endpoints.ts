/**
 * Webhook endpoints: an account's URLs and the events each wants. The signing secret is
 * shown once, when the endpoint is made, and kept sealed (it must be read back to sign),
 * bound to the endpoint's id so a sealed secret copied onto another row does not open.
 */
import { randomBytes } from 'node:crypto';
import { newPublicId } from '../accounts/index.ts';
import type { SealingBox } from '../secrets/index.ts';
import type { Queryable } from '../store/index.ts';
import type { WebhookEventType } from './events.ts';
import { checkRegistration, type TargetRules } from './target.ts';

export interface WebhookEndpoint {
  id: string;
  accountId: string;
  url: string;
  events: WebhookEventType[];
  description: string;
  disabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** A new endpoint with its secret: the only time the secret is shown. */
export interface CreatedWebhookEndpoint extends WebhookEndpoint {
  secret: string;
}

export interface NewEndpoint {
  url: string;
  events: readonly WebhookEventType[];
  description?: string;
}

export interface EndpointChanges {
  url?: string;
  events?: readonly WebhookEventType[];
  description?: string;
  disabled?: boolean;
}

export interface Listing {
  after?: { createdAt: Date; id: string };
  limit: number;
}

export interface WebhookEndpoints {
  create(accountId: string, endpoint: NewEndpoint): Promise<CreatedWebhookEndpoint>;
  /** The account's endpoints, oldest first, in keyset pages. */
  list(accountId: string, listing: Listing): Promise<WebhookEndpoint[]>;
  get(accountId: string, id: string): Promise<WebhookEndpoint | null>;
  /** Null when the endpoint is not the account's. */
  update(accountId: string, id: string, changes: EndpointChanges): Promise<WebhookEndpoint | null>;
  /** Deletes it with its deliveries; false when it is not the account's. */
  delete(accountId: string, id: string): Promise<boolean>;
}

interface EndpointRow {
  id: string;
  account_id: string;
  url: string;
  event_types: string[];
  description: string;
  disabled: boolean;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, account_id, url, event_types, description, disabled, created_at, updated_at';

/** `whsec_` and 256 bits, base64url: the form Stripe's secrets have, so tools recognise it. */
function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

export function createEndpoints(
  db: Queryable,
  box: SealingBox,
  rules: TargetRules,
): WebhookEndpoints {
  const checkedUrl = async (url: string) => (await checkRegistration(url, rules)).toString();
  return {
    async create(accountId, endpoint) {
      const url = await checkedUrl(endpoint.url);
      const id = newPublicId();
      const secret = newSigningSecret();
      const [row] = await db.query<EndpointRow>(
        `INSERT INTO webhook_endpoints (id, account_id, url, event_types, description, secret)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
        [
          id,
          accountId,
          url,
          distinct(endpoint.events),
          endpoint.description ?? '',
          box.seal(secret, id),
        ],
      );
      return { ...endpointOf(row as EndpointRow), secret };
    },
    async list(accountId, listing) {
      const rows = await db.query<EndpointRow>(
        `SELECT ${COLUMNS} FROM webhook_endpoints
         WHERE account_id = $1
           AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::text))
         ORDER BY created_at, id LIMIT $4`,
        [accountId, listing.after?.createdAt ?? null, listing.after?.id ?? null, listing.limit],
      );
      return rows.map(endpointOf);
    },
    async get(accountId, id) {
      const [row] = await db.query<EndpointRow>(
        `SELECT ${COLUMNS} FROM webhook_endpoints WHERE id = $1 AND account_id = $2`,
        [id, accountId],
      );
      return row ? endpointOf(row) : null;
    },
    async update(accountId, id, changes) {
      const url = changes.url === undefined ? null : await checkedUrl(changes.url);
      const [row] = await db.query<EndpointRow>(
        `UPDATE webhook_endpoints SET
           url = COALESCE($3, url),
           event_types = COALESCE($4, event_types),
           description = COALESCE($5, description),
           disabled = COALESCE($6, disabled),
           updated_at = now()
         WHERE id = $1 AND account_id = $2 RETURNING ${COLUMNS}`,
        [
          id,
          accountId,
          url,
          changes.events ? distinct(changes.events) : null,
          changes.description ?? null,
          changes.disabled ?? null,
        ],
      );
      return row ? endpointOf(row) : null;
    },
    async delete(accountId, id) {
      const rows = await db.query(
        'DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2 RETURNING id',
        [id, accountId],
      );
      return rows.length > 0;
    },
  };
}

function distinct<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

function endpointOf(row: EndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    accountId: row.account_id,
    url: row.url,
    events: row.event_types as WebhookEventType[],
    description: row.description,
    disabled: row.disabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
