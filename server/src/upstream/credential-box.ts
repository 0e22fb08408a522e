/**
 * Upstream-proxy credentials at rest. They must be presented to the supplier's proxy
 * on every stream, so unlike key secrets and node tokens they cannot be hashed: they are
 * sealed (secrets/sealing-box.ts) under a 32-byte server secret kept in `settings` exactly
 * like the pepper (made once at random, shared by every server on the database).
 *
 * What this protects against: a leaked dump of the `upstream_proxies` table, a backup
 * of it, a log line or an API answer never holds a usable password. What it does not:
 * someone who reads the whole database also reads the key (as with the pepper).
 *
 * The node id is the label sealed values are bound to, so a sealed value copied onto
 * another node's row does not open there.
 */
import { loadOrCreateServerSecret } from '../accounts/index.ts';
import { createSealingBox, type SealingBox } from '../secrets/index.ts';
import type { Queryable } from '../store/index.ts';

/** The `settings` row that holds the key. */
export const CREDENTIALS_KEY_SETTING = 'upstream_credentials_key';

export type CredentialBox = SealingBox;

export async function loadCredentialBox(db: Queryable): Promise<CredentialBox> {
  return createCredentialBox(await loadOrCreateServerSecret(db, CREDENTIALS_KEY_SETTING));
}

export const createCredentialBox: (key: Buffer) => CredentialBox = createSealingBox;
