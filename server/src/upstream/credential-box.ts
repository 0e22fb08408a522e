/**
 * Upstream-proxy credentials at rest. They must be presented to the supplier's proxy
 * on every stream, so unlike key secrets and node tokens they cannot be hashed: they are
 * sealed with AES-256-GCM under a 32-byte server secret kept in `settings` exactly like
 * the pepper (made once at random, shared by every server on the database).
 *
 * What this protects against: a leaked dump of the `upstream_proxies` table, a backup
 * of it, a log line or an API answer never holds a usable password. What it does not:
 * someone who reads the whole database also reads the key (as with the pepper).
 *
 * Sealed text: `v1.<iv>.<tag>.<ciphertext>`, base64url parts. The node id is the
 * additional authenticated data, so a sealed value copied onto another node's row does
 * not open there.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { loadOrCreateServerSecret } from '../accounts/index.ts';
import type { Queryable } from '../store/index.ts';

/** The `settings` row that holds the key. */
export const CREDENTIALS_KEY_SETTING = 'upstream_credentials_key';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface CredentialBox {
  seal(plaintext: string, boundTo: string): string;
  /** The plaintext; throws when the value was altered, moved to another row, or sealed under another key. */
  open(sealed: string, boundTo: string): string;
}

export async function loadCredentialBox(db: Queryable): Promise<CredentialBox> {
  return createCredentialBox(await loadOrCreateServerSecret(db, CREDENTIALS_KEY_SETTING));
}

export function createCredentialBox(key: Buffer): CredentialBox {
  if (key.length !== 32) throw new RangeError('the credentials key must be 32 bytes');
  return {
    seal(plaintext, boundTo) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(boundTo, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [VERSION, iv, cipher.getAuthTag(), ciphertext]
        .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
        .join('.');
    },
    open(sealed, boundTo) {
      const [version, iv, tag, ciphertext, extra] = sealed
        .split('.')
        .map((part, index) => (index === 0 ? part : Buffer.from(part, 'base64url')));
      if (
        version !== VERSION ||
        extra !== undefined ||
        !(iv instanceof Buffer && iv.length === IV_BYTES) ||
        !(tag instanceof Buffer && tag.length === TAG_BYTES) ||
        !(ciphertext instanceof Buffer)
      ) {
        throw new Error('sealed upstream credentials are not in the v1 form');
      }
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(boundTo, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    },
  };
}
