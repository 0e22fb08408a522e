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

/** `proxy`: may carry traffic through the gateway. `api`: may call the API as a bearer token. */
export type KeyScope = 'proxy' | 'api';
export const KEY_SCOPES: readonly KeyScope[] = ['proxy', 'api'];

/** A key as it was made: the only time its secret is known. */
export interface IssuedKey {
  id: string;
  accountId: string;
  name: string;
  scopes: KeyScope[];
  createdAt: Date;
  /** The proxy password, and the part after the dot of `KEYID.SECRET`. Never stored. */
  secret: string;
}

/** A live key (neither revoked nor disabled) whose secret matched, with its limits. */
export interface VerifiedKey {
  id: string;
  accountId: string;
  name: string;
  scopes: KeyScope[];
  monthlyByteCap: number | null;
  maxConcurrency: number | null;
  allowedCountries: string[] | null;
  clientAllowlist: string[] | null;
}

export interface IssueKeyOptions {
  name?: string;
  /** Default: both `proxy` and `api`. */
  scopes?: readonly KeyScope[];
}

interface KeyRow {
  id: string;
  account_id: string;
  name: string;
  scopes: string[];
  created_at: Date;
}

export async function issueKey(
  db: Queryable,
  pepper: Buffer,
  accountId: string,
  options: IssueKeyOptions = {},
): Promise<IssuedKey> {
  const name = options.name ?? '';
  checkDisplayName(name);
  const scopes = [...new Set(options.scopes ?? KEY_SCOPES)];
  if (scopes.length === 0 || !scopes.every((scope) => KEY_SCOPES.includes(scope))) {
    throw ipcolaError(
      'invalid_request',
      `scopes must be a non-empty list of ${KEY_SCOPES.join(', ')}`,
    );
  }
  const secret = newSecret();
  const [row] = await db.query<KeyRow>(
    `INSERT INTO api_keys (id, account_id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4, $5)
     RETURNING id, account_id, name, scopes, created_at`,
    [newId(PUBLIC_ID_LENGTH), accountId, name, keyedHash(pepper, secret), scopes],
  );
  if (!row) throw new Error('issueKey: the inserted row is missing');
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    scopes: knownScopes(row.scopes),
    createdAt: row.created_at,
    secret,
  };
}

export async function verifyKey(
  db: Queryable,
  pepper: Buffer,
  keyId: string,
  secret: string,
): Promise<VerifiedKey | null> {
  // Shapes no key can have never reach the database.
  if (!PUBLIC_ID_PATTERN.test(keyId) || !SECRET_PATTERN.test(secret)) return null;
  const [row] = await db.query<
    KeyRow & {
      secret_hash: string;
      monthly_byte_cap: number | null;
      max_concurrency: number | null;
      allowed_countries: string[] | null;
      client_allowlist: string[] | null;
    }
  >(
    `SELECT id, account_id, name, scopes, created_at, secret_hash, monthly_byte_cap,
            max_concurrency, allowed_countries, client_allowlist
     FROM api_keys WHERE id = $1 AND NOT disabled AND revoked_at IS NULL`,
    [keyId],
  );
  const offered = keyedHash(pepper, secret);
  if (!row || !sameDigest(offered, row.secret_hash)) return null;
  return {
    id: row.id,
    accountId: row.account_id,
    name: row.name,
    scopes: knownScopes(row.scopes),
    monthlyByteCap: row.monthly_byte_cap,
    maxConcurrency: row.max_concurrency,
    allowedCountries: row.allowed_countries,
    clientAllowlist: row.client_allowlist,
  };
}

function knownScopes(scopes: readonly string[]): KeyScope[] {
  return KEY_SCOPES.filter((scope) => scopes.includes(scope));
}
