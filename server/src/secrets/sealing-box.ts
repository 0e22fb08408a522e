/**
 * A sealing box: text sealed at rest with AES-256-GCM under a 32-byte server secret,
 * bound to a label (the additional authenticated data), so a sealed value copied onto
 * another row, or opened under another label, does not open.
 *
 * Used for what must be read back and so cannot be hashed: upstream-proxy credentials
 * (upstream/credential-box.ts) and the answers kept for Idempotency-Key retries
 * (api/idempotency.ts), which can carry a key's secret.
 *
 * Sealed text: `v1.<iv>.<tag>.<ciphertext>`, base64url parts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SealingBox {
  seal(plaintext: string, boundTo: string): string;
  /** The plaintext; throws when the value was altered, moved to another row, or sealed under another key. */
  open(sealed: string, boundTo: string): string;
}

export function createSealingBox(key: Buffer): SealingBox {
  if (key.length !== 32) throw new RangeError('the sealing key must be 32 bytes');
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
        throw new Error('sealed text is not in the v1 form');
      }
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(boundTo, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    },
  };
}
