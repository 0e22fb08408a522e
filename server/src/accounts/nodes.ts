import { EXIT_TYPES, type ExitType, isExitType } from '@ipcola/shared/targeting';
import { ipcolaError } from '../errors/index.ts';
import type { Queryable } from '../store/index.ts';
import { checkDisplayName } from './rules.ts';
import {
  keyedHash,
  newId,
  newSecret,
  PUBLIC_ID_LENGTH,
  PUBLIC_ID_PATTERN,
  SECRET_PATTERN,
  sameDigest,
} from './secrets.ts';

/** A node's type is the type of every exit it announces. */
export type NodeType = ExitType;

/** A node as it was registered: the only time its token is known. */
export interface RegisteredNode {
  id: string;
  accountId: string;
  name: string;
  type: NodeType;
  createdAt: Date;
  /** `<node id>.<secret>`: what the agent presents to the hub. Never stored. */
  token: string;
}

/** A registered, not deleted node whose token matched. */
export interface VerifiedNode {
  id: string;
  /** The operator's account, credited for the bytes the node carries. */
  accountId: string;
  name: string;
  type: NodeType;
}

export interface RegisterNodeOptions {
  name?: string;
  /** Default `residential`. */
  type?: NodeType;
}

interface NodeRow {
  id: string;
  account_id: string;
  name: string;
  type: NodeType;
  created_at: Date;
}

export async function registerNode(
  db: Queryable,
  pepper: Buffer,
  accountId: string,
  options: RegisterNodeOptions = {},
): Promise<RegisteredNode> {
  const name = options.name ?? '';
  checkDisplayName(name);
  const type = options.type ?? 'residential';
  checkNodeType(type);
  const secret = newSecret();
  const [row] = await db.query<NodeRow>(
    `INSERT INTO nodes (id, account_id, name, type, token_hash) VALUES ($1, $2, $3, $4, $5)
     RETURNING id, account_id, name, type, created_at`,
    [newId(PUBLIC_ID_LENGTH), accountId, name, type, keyedHash(pepper, secret)],
  );
  if (!row) throw new Error('registerNode: the inserted row is missing');
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    type: row.type,
    createdAt: row.created_at,
    token: `${row.id}.${secret}`,
  };
}

export async function verifyNodeToken(
  db: Queryable,
  pepper: Buffer,
  token: string,
): Promise<VerifiedNode | null> {
  const dot = token.indexOf('.');
  const nodeId = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  if (dot < 1 || !PUBLIC_ID_PATTERN.test(nodeId) || !SECRET_PATTERN.test(secret)) return null;
  const [row] = await db.query<NodeRow & { token_hash: string }>(
    // Upstream-proxy nodes have no token (token_hash NULL): nothing ever verifies as one.
    `SELECT id, account_id, name, type, created_at, token_hash
     FROM nodes WHERE id = $1 AND deleted_at IS NULL AND token_hash IS NOT NULL`,
    [nodeId],
  );
  const offered = keyedHash(pepper, secret);
  if (!row || !sameDigest(offered, row.token_hash)) return null;
  return { id: row.id, accountId: row.account_id, name: row.name, type: row.type };
}

/** Refuses a node type outside EXIT_TYPES, with the one message every form uses. */
export function checkNodeType(type: string): asserts type is NodeType {
  if (!isExitType(type)) {
    throw ipcolaError('invalid_request', `type must be one of ${EXIT_TYPES.join(', ')}`);
  }
}

/** A node as its operator sees it in the database (live state comes from the hub). */
export interface NodeView {
  id: string;
  name: string;
  type: NodeType;
  /** `agent`: runs our agent with a token; `upstream`: a supplier's proxy we chain through. */
  kind: 'agent' | 'upstream';
  createdAt: Date;
  /** Customer bytes the node has carried, both ways, as flushed to usage. */
  bytesCarried: number;
  /** What those bytes earned, at the operator rates of their hours, in micro-units. */
  earnedMicro: number;
  /** The operator account's currency. */
  currency: string;
}

/** The account's nodes that are not deleted, oldest first, after `after` (a keyset cursor). */
export async function listNodes(
  db: Queryable,
  accountId: string,
  page: { after?: { createdAt: Date; id: string }; limit: number },
): Promise<NodeView[]> {
  const rows = await db.query<{
    id: string;
    name: string;
    type: NodeType;
    upstream: boolean;
    created_at: Date;
    bytes_carried: number;
    earned_micro: number;
    currency: string;
  }>(
    `SELECT n.id, n.name, n.type, n.created_at,
            EXISTS (SELECT 1 FROM upstream_proxies p WHERE p.node_id = n.id) AS upstream,
            coalesce(u.bytes, 0)::bigint AS bytes_carried,
            coalesce(u.earned, 0)::bigint AS earned_micro, a.currency
     FROM nodes n JOIN accounts a ON a.id = n.account_id
     LEFT JOIN LATERAL (
       SELECT sum(bytes_up + bytes_down) AS bytes, sum(earned_micro) AS earned
       FROM usage_hourly WHERE node_id = n.id
     ) u ON true
     WHERE n.account_id = $1 AND n.deleted_at IS NULL
       AND ($2::timestamptz IS NULL OR (n.created_at, n.id) > ($2::timestamptz, $3::text))
     ORDER BY n.created_at, n.id LIMIT $4`,
    [accountId, page.after?.createdAt ?? null, page.after?.id ?? null, page.limit],
  );
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    type: row.type,
    kind: row.upstream ? 'upstream' : 'agent',
    createdAt: row.created_at,
    bytesCarried: row.bytes_carried,
    earnedMicro: row.earned_micro,
    currency: row.currency,
  }));
}

/** Deletes the node for good (its token stops verifying); false when it is not the account's. */
export async function deleteNode(
  db: Queryable,
  accountId: string,
  nodeId: string,
): Promise<boolean> {
  const rows = await db.query(
    `UPDATE nodes SET deleted_at = now()
     WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL RETURNING id`,
    [nodeId, accountId],
  );
  return rows.length > 0;
}
