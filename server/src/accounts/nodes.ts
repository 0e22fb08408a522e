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

export type NodeType = 'residential' | 'datacenter' | 'mobile';
export const NODE_TYPES: readonly NodeType[] = ['residential', 'datacenter', 'mobile'];

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

/** Refuses a node type outside NODE_TYPES, with the one message every form uses. */
export function checkNodeType(type: string): asserts type is NodeType {
  if (!NODE_TYPES.includes(type as NodeType)) {
    throw ipcolaError('invalid_request', `type must be one of ${NODE_TYPES.join(', ')}`);
  }
}
