/**
 * Random identifiers and secrets, and the keyed hash secrets are stored as.
 *
 * Secrets use the 62 letters and digits only: nothing in them needs URL-encoding, and
 * they hold neither `.` (the separator of `KEYID.SECRET` and node tokens) nor `:` (the
 * separator of `user:password`) nor `-`, so a double-click selects one whole.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const ALNUM = `ABCDEFGHIJKLMNOPQRSTUVWXYZ${LOWER_ALNUM}`;

/** 43 characters of 62 carry 256 bits. */
export const SECRET_LENGTH = 43;
export const SECRET_PATTERN = /^[A-Za-z0-9]{43}$/;
/** Ids of keys and nodes: 12 of 36 characters, about 62 bits; they are not secret. */
export const PUBLIC_ID_LENGTH = 12;
export const PUBLIC_ID_PATTERN = /^[a-z0-9]{1,32}$/;

/** A uniformly random string over the alphabet (rejection sampling, no modulo bias). */
function randomString(alphabet: string, length: number): string {
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit) out += alphabet[byte % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Lowercase letters and digits: usable as a key id in a proxy username. */
export function newId(length: number): string {
  return randomString(LOWER_ALNUM, length);
}

export function newSecret(): string {
  return randomString(ALNUM, SECRET_LENGTH);
}

/** HMAC-SHA-256 of the secret under the pepper, hex: how secrets are stored. */
export function keyedHash(pepper: Buffer, secret: string): string {
  return createHmac('sha256', pepper).update(secret, 'utf8').digest('hex');
}

/** Compares two hex digests in constant time. */
export function sameDigest(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}
