import { plainAddress } from '@ipcola/shared/addresses';
import ipaddr from 'ipaddr.js';
import { ipcolaError } from '../errors/index.ts';
import type { Database, Queryable } from '../store/index.ts';
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

/** A new key's settings: everything a key can be changed in, set in the same transaction. */
export interface IssueKeyOptions extends Omit<KeyChanges, 'name' | 'scopes'> {
  name?: string;
  /**
   * Default: `proxy` only. `api` makes the secret a bearer token that can make and revoke
   * keys, so a proxy password copied out of a scraper's config must not carry it unasked.
   */
  scopes?: readonly KeyScope[];
}

/** Scopes of a key made without naming any. */
export const DEFAULT_KEY_SCOPES: readonly KeyScope[] = ['proxy'];

interface KeyRow {
  id: string;
  account_id: string;
  name: string;
  scopes: string[];
  created_at: Date;
}

export async function issueKey(
  db: Database,
  pepper: Buffer,
  accountId: string,
  options: IssueKeyOptions = {},
): Promise<IssuedKey> {
  const { name = '', scopes: asked, ...settings } = options;
  checkDisplayName(name);
  const scopes = [...new Set(asked ?? DEFAULT_KEY_SCOPES)];
  checkScopes(scopes);
  const secret = newSecret();
  // One transaction: a key whose limits or ranges are refused is not made at all.
  return db.transaction(async (tx) => {
    const [row] = await tx.query<KeyRow>(
      `INSERT INTO api_keys (id, account_id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4, $5)
       RETURNING id, account_id, name, scopes, created_at`,
      [newId(PUBLIC_ID_LENGTH), accountId, name, keyedHash(pepper, secret), scopes],
    );
    if (!row) throw new Error('issueKey: the inserted row is missing');
    if (Object.values(settings).some((value) => value !== undefined)) {
      await changeKey(tx, accountId, row.id, settings);
    }
    return issued(row, secret);
  });
}

function issued(row: KeyRow, secret: string): IssuedKey {
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
  const [row] = await db.query<VerifiedKeyRow & { secret_hash: string }>(
    `SELECT id, account_id, name, scopes, created_at, secret_hash, monthly_byte_cap,
            max_concurrency, allowed_countries, client_allowlist
     FROM api_keys WHERE id = $1 AND NOT disabled AND revoked_at IS NULL`,
    [keyId],
  );
  const offered = keyedHash(pepper, secret);
  if (!row || !sameDigest(offered, row.secret_hash)) return null;
  return verifiedKey(row);
}

/** The columns a verified key is made of. */
type VerifiedKeyRow = KeyRow & {
  monthly_byte_cap: number | null;
  max_concurrency: number | null;
  allowed_countries: string[] | null;
  client_allowlist: string[] | null;
};

function verifiedKey(row: VerifiedKeyRow): VerifiedKey {
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

/** What limits a key's traffic right now, as the database knows it. */
export interface KeyStanding {
  keyId: string;
  accountId: string;
  /**
   * What the account may still spend, in micro-units: credits minus flushed usage, plus
   * the credit limit of a postpaid account (its usage is billed afterwards, through Stripe).
   */
  balanceMicro: number;
  monthlyByteCap: number | null;
  /** Flushed bytes of the key since monthStart; 0 for a key without a cap (not summed). */
  monthBytes: number;
  /** False once the key is disabled or revoked. */
  usable: boolean;
  /** When the secret was last replaced; connections admitted before it are cut. */
  secretRotatedAt: Date | null;
  maxConcurrency: number | null;
  allowedCountries: string[] | null;
  clientAllowlist: string[] | null;
}

/** The standing of each of the keys that exists (unknown ids are left out). */
export async function keyStanding(
  db: Queryable,
  keyIds: readonly string[],
  monthStart: Date,
): Promise<KeyStanding[]> {
  if (keyIds.length === 0) return [];
  const rows = await db.query<{
    id: string;
    account_id: string;
    balance_micro: number;
    monthly_byte_cap: number | null;
    month_bytes: number;
    usable: boolean;
    secret_rotated_at: Date | null;
    max_concurrency: number | null;
    allowed_countries: string[] | null;
    client_allowlist: string[] | null;
  }>(
    `SELECT k.id, k.account_id, k.monthly_byte_cap, k.secret_rotated_at,
            a.balance_micro + CASE WHEN a.postpaid THEN a.credit_limit_micro ELSE 0 END
              AS balance_micro,
            k.max_concurrency, k.allowed_countries, k.client_allowlist,
            NOT k.disabled AND k.revoked_at IS NULL AS usable,
            CASE WHEN k.monthly_byte_cap IS NULL THEN 0 ELSE coalesce(
              (SELECT sum(u.bytes_up + u.bytes_down) FROM usage_hourly u
               WHERE u.key_id = k.id AND u.hour >= $2), 0)::bigint END AS month_bytes
     FROM api_keys k JOIN accounts a ON a.id = k.account_id
     WHERE k.id = ANY($1::text[])`,
    [keyIds, monthStart],
  );
  return rows.map((row) => ({
    keyId: row.id,
    accountId: row.account_id,
    balanceMicro: row.balance_micro,
    monthlyByteCap: row.monthly_byte_cap,
    monthBytes: row.month_bytes,
    usable: row.usable,
    secretRotatedAt: row.secret_rotated_at,
    maxConcurrency: row.max_concurrency,
    allowedCountries: row.allowed_countries,
    clientAllowlist: row.client_allowlist,
  }));
}

/** A key as its account sees it: everything but the secret. */
export interface KeyView {
  id: string;
  name: string;
  scopes: KeyScope[];
  disabled: boolean;
  monthlyByteCap: number | null;
  maxConcurrency: number | null;
  allowedCountries: string[] | null;
  clientAllowlist: string[] | null;
  /** Client ranges from which a connection without credentials is this key. */
  passwordlessCidrs: string[];
  /** Username parameters (`country-us`) for such connections; '' for none. */
  defaultTargeting: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface KeyChanges {
  name?: string;
  scopes?: KeyScope[];
  disabled?: boolean;
  monthlyByteCap?: number | null;
  maxConcurrency?: number | null;
  /** Lowercase ISO 3166-1 alpha-2 codes; null lifts the restriction. */
  allowedCountries?: string[] | null;
  /** CIDRs (a bare address is a /32 or /128); null lifts the restriction. */
  clientAllowlist?: string[] | null;
  /** Replaces the key's password-less ranges ([] removes them); each must be free. */
  passwordlessCidrs?: string[];
  /** Username parameters without the key id, already checked against the grammar. */
  defaultTargeting?: string;
}

interface KeyViewRow {
  id: string;
  name: string;
  scopes: string[];
  disabled: boolean;
  monthly_byte_cap: number | null;
  max_concurrency: number | null;
  allowed_countries: string[] | null;
  client_allowlist: string[] | null;
  passwordless_cidrs: string[];
  default_targeting: string;
  created_at: Date;
  updated_at: Date;
}

const VIEW_COLUMNS = `id, name, scopes, disabled, monthly_byte_cap, max_concurrency, allowed_countries,
  client_allowlist, default_targeting, created_at, updated_at,
  (SELECT coalesce(array_agg(p.cidr::text ORDER BY p.cidr), '{}') FROM passwordless_cidrs p
   WHERE p.key_id = api_keys.id) AS passwordless_cidrs`;

function keyView(row: KeyViewRow): KeyView {
  return {
    id: row.id,
    name: row.name,
    scopes: knownScopes(row.scopes),
    disabled: row.disabled,
    monthlyByteCap: row.monthly_byte_cap,
    maxConcurrency: row.max_concurrency,
    allowedCountries: row.allowed_countries,
    clientAllowlist: row.client_allowlist,
    passwordlessCidrs: row.passwordless_cidrs,
    defaultTargeting: row.default_targeting,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The account's keys that are not revoked, oldest first, after `after` (a keyset cursor). */
export async function listKeys(
  db: Queryable,
  accountId: string,
  page: { after?: { createdAt: Date; id: string }; limit: number },
): Promise<KeyView[]> {
  const rows = await db.query<KeyViewRow>(
    `SELECT ${VIEW_COLUMNS} FROM api_keys
     WHERE account_id = $1 AND revoked_at IS NULL
       AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::text))
     ORDER BY created_at, id LIMIT $4`,
    [accountId, page.after?.createdAt ?? null, page.after?.id ?? null, page.limit],
  );
  return rows.map(keyView);
}

/** The key when it belongs to the account and is not revoked, else null. */
export async function getKey(
  db: Queryable,
  accountId: string,
  keyId: string,
): Promise<KeyView | null> {
  const [row] = await db.query<KeyViewRow>(
    `SELECT ${VIEW_COLUMNS} FROM api_keys
     WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL`,
    [keyId, accountId],
  );
  return row ? keyView(row) : null;
}

/** Applies the changes; null when the key is not the account's or is revoked. */
export async function updateKey(
  db: Database,
  accountId: string,
  keyId: string,
  changes: KeyChanges,
): Promise<KeyView | null> {
  return db.transaction((tx) => changeKey(tx, accountId, keyId, changes));
}

/** updateKey inside the caller's transaction (the ranges take several statements). */
async function changeKey(
  tx: Queryable,
  accountId: string,
  keyId: string,
  changes: KeyChanges,
): Promise<KeyView | null> {
  if (changes.name !== undefined) checkDisplayName(changes.name);
  if (changes.scopes !== undefined) checkScopes(changes.scopes);
  const allowlist =
    changes.clientAllowlist === undefined || changes.clientAllowlist === null
      ? changes.clientAllowlist
      : changes.clientAllowlist.map((cidr) => canonicalCidr('client_allowlist', cidr));
  const ranges =
    changes.passwordlessCidrs === undefined
      ? undefined
      : passwordlessRanges(changes.passwordlessCidrs);
  // The update comes first: it proves the key is the account's (and locks its row)
  // before any range is given to it.
  const [row] = await tx.query<KeyViewRow>(
    `UPDATE api_keys SET
       name = CASE WHEN $3 THEN $4 ELSE name END,
       disabled = CASE WHEN $5 THEN $6 ELSE disabled END,
       monthly_byte_cap = CASE WHEN $7 THEN $8::bigint ELSE monthly_byte_cap END,
       max_concurrency = CASE WHEN $9 THEN $10::integer ELSE max_concurrency END,
       scopes = CASE WHEN $11 THEN $12::text[] ELSE scopes END,
       allowed_countries = CASE WHEN $13 THEN $14::text[] ELSE allowed_countries END,
       client_allowlist = CASE WHEN $15 THEN $16::text[] ELSE client_allowlist END,
       default_targeting = CASE WHEN $17 THEN $18 ELSE default_targeting END,
       updated_at = now()
     WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL
     RETURNING ${VIEW_COLUMNS}`,
    [
      keyId,
      accountId,
      changes.name !== undefined,
      changes.name ?? '',
      changes.disabled !== undefined,
      changes.disabled ?? false,
      changes.monthlyByteCap !== undefined,
      changes.monthlyByteCap ?? null,
      changes.maxConcurrency !== undefined,
      changes.maxConcurrency ?? null,
      changes.scopes !== undefined,
      changes.scopes ? [...new Set(changes.scopes)] : null,
      changes.allowedCountries !== undefined,
      changes.allowedCountries ? [...new Set(changes.allowedCountries)] : null,
      allowlist !== undefined,
      allowlist ?? null,
      changes.defaultTargeting !== undefined,
      changes.defaultTargeting ?? '',
    ],
  );
  if (!row || ranges === undefined) return row ? keyView(row) : null;
  await tx.query('DELETE FROM passwordless_cidrs WHERE key_id = $1', [keyId]);
  for (const cidr of ranges) {
    try {
      // One statement per range, so that a refusal names the range that is taken.
      await tx.query(
        'INSERT INTO passwordless_cidrs (cidr, key_id) VALUES (network($1::inet), $2)',
        [cidr, keyId],
      );
    } catch (error) {
      if (!isExclusionViolation(error, 'passwordless_cidrs_no_overlap')) throw error;
      throw ipcolaError(
        'passwordless_cidr_taken',
        `passwordless_cidrs: ${cidr} overlaps a range that is already password-less for another key`,
      );
    }
  }
  const [changed] = await tx.query<KeyViewRow>(
    `SELECT ${VIEW_COLUMNS} FROM api_keys WHERE id = $1`,
    [keyId],
  );
  return changed ? keyView(changed) : null;
}

/** What a connection with no credentials from `address` is: the live key whose range holds it. */
export async function passwordlessKey(
  db: Queryable,
  address: string,
): Promise<(VerifiedKey & { defaultTargeting: string }) | null> {
  const client = clientAddress(address);
  if (client === null) return null;
  const [row] = await db.query<VerifiedKeyRow & { default_targeting: string }>(
    `SELECT k.id, k.account_id, k.name, k.scopes, k.created_at, k.monthly_byte_cap,
            k.max_concurrency, k.allowed_countries, k.client_allowlist, k.default_targeting
     FROM passwordless_cidrs p JOIN api_keys k ON k.id = p.key_id
     WHERE p.cidr >>= $1::inet AND NOT k.disabled AND k.revoked_at IS NULL`,
    [client],
  );
  if (!row) return null;
  return { ...verifiedKey(row), defaultTargeting: row.default_targeting };
}

/** Revokes the key for good; false when it is not the account's or already revoked. */
export async function revokeKey(db: Queryable, accountId: string, keyId: string): Promise<boolean> {
  // A revoked key's password-less ranges are freed for other keys.
  const rows = await db.query(
    `WITH revoked AS (
       UPDATE api_keys SET revoked_at = now(), updated_at = now()
       WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL RETURNING id
     ), freed AS (
       DELETE FROM passwordless_cidrs WHERE key_id IN (SELECT id FROM revoked)
     )
     SELECT id FROM revoked`,
    [keyId, accountId],
  );
  return rows.length > 0;
}

/** A new secret for the key (shown once); the old one stops verifying. Null when not the account's. */
export async function rotateKey(
  db: Queryable,
  pepper: Buffer,
  accountId: string,
  keyId: string,
): Promise<IssuedKey | null> {
  const secret = newSecret();
  const [row] = await db.query<KeyRow>(
    `UPDATE api_keys SET secret_hash = $3, secret_rotated_at = now(), updated_at = now()
     WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL
     RETURNING id, account_id, name, scopes, created_at`,
    [keyId, accountId, keyedHash(pepper, secret)],
  );
  return row ? issued(row, secret) : null;
}

function checkScopes(scopes: readonly string[]): void {
  if (scopes.length === 0 || !scopes.every((scope) => KEY_SCOPES.includes(scope as KeyScope))) {
    throw ipcolaError(
      'invalid_request',
      `scopes must be a non-empty list of ${KEY_SCOPES.join(', ')}`,
    );
  }
}

/** A CIDR in canonical form (`10.0.0.0/8`); a bare address becomes a single-host range. */
function canonicalCidr(field: string, text: string): string {
  try {
    const [address, bits] = parsedCidr(text);
    return `${address.toString()}/${bits}`;
  } catch {
    throw ipcolaError(
      'invalid_request',
      `${field}: ${JSON.stringify(text)} is not an address or CIDR`,
    );
  }
}

function parsedCidr(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  return text.includes('/')
    ? ipaddr.parseCIDR(text)
    : [ipaddr.parse(text), ipaddr.parse(text).kind() === 'ipv4' ? 32 : 128];
}

/**
 * The widest password-less range: every connection from it is billed to the key, and
 * nobody else can claim any part of it, so one key must not take a whole network.
 */
const WIDEST_PASSWORDLESS_PREFIX = { ipv4: 16, ipv6: 48 } as const;

/** Checked, canonical ranges; overlaps within the list are refused here, others by the database. */
function passwordlessRanges(texts: readonly string[]): string[] {
  const ranges = texts.map((text) => {
    const cidr = canonicalCidr('passwordless_cidrs', text);
    const [address, bits] = ipaddr.parseCIDR(cidr);
    if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
      throw ipcolaError(
        'invalid_request',
        `passwordless_cidrs: write ${cidr} as an IPv4 range (clients are matched as IPv4)`,
      );
    }
    const widest = WIDEST_PASSWORDLESS_PREFIX[address.kind()];
    if (bits < widest) {
      throw ipcolaError(
        'invalid_request',
        `passwordless_cidrs: ${cidr} is wider than /${widest}, the widest range a key may take`,
      );
    }
    return { cidr, range: [address, bits] as [ipaddr.IPv4 | ipaddr.IPv6, number] };
  });
  for (const [i, a] of ranges.entries()) {
    for (const b of ranges.slice(i + 1)) {
      if (a.range[0].kind() !== b.range[0].kind()) continue;
      // Two CIDRs overlap exactly when one holds the other's network address.
      if (a.range[0].match(b.range) || b.range[0].match(a.range)) {
        throw ipcolaError('invalid_request', `passwordless_cidrs: ${a.cidr} and ${b.cidr} overlap`);
      }
    }
  }
  return ranges.map(({ cidr }) => cidr);
}

/** The client's address as the database compares it: IPv4-mapped IPv6 as IPv4; null if unreadable. */
function clientAddress(address: string): string | null {
  return plainAddress(address)?.toString() ?? null;
}

function isExclusionViolation(error: unknown, constraint: string): boolean {
  const failure = error as { code?: unknown; constraint?: unknown } | null;
  return failure?.code === '23P01' && failure.constraint === constraint;
}
