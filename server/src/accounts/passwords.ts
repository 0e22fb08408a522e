/**
 * Password hashing with scrypt. The stored value is a PHC-style string carrying the
 * parameters and salt, `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding),
 * so the cost can rise later without invalidating stored hashes.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

interface Cost {
  /** log2 of N */
  ln: number;
  r: number;
  p: number;
}

const COST: Cost = { ln: 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
const STORED =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})$/;

function derive(password: string, salt: Buffer, cost: Cost, length: number): Promise<Buffer> {
  const N = 2 ** cost.ln;
  return new Promise((resolve, reject) => {
    // scrypt needs 128 * N * r bytes; the default cap (32 MiB) is exactly that for our cost.
    const maxmem = 256 * N * cost.r;
    scrypt(password, salt, length, { N, r: cost.r, p: cost.p, maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, COST, HASH_BYTES);
  return `$scrypt$ln=${COST.ln},r=${COST.r},p=${COST.p}$${b64(salt)}$${b64(hash)}`;
}

/** True when the password matches the stored value; false for any malformed value. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = STORED.exec(stored);
  if (!match) return false;
  const cost = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  // Bounds keep a tampered row from turning a login into a denial of service.
  if (cost.ln < 10 || cost.ln > 20 || cost.r < 1 || cost.r > 32 || cost.p < 1 || cost.p > 16) {
    return false;
  }
  const salt = Buffer.from(match[4] as string, 'base64');
  const expected = Buffer.from(match[5] as string, 'base64');
  const actual = await derive(password, salt, cost, expected.length);
  return timingSafeEqual(actual, expected);
}

let dummy: Promise<string> | undefined;

/** Makes the stand-in hash verifyNothing compares against, ahead of the first need. */
export function prepareStandIn(): void {
  dummy ??= hashPassword(randomBytes(16).toString('hex'));
  dummy.catch(() => {
    dummy = undefined;
  });
}

/**
 * Does the work of a failed verification, so that a login for an unknown email takes
 * as long as one with a wrong password. Always false.
 */
export async function verifyNothing(password: string): Promise<false> {
  prepareStandIn();
  await verifyPassword(password, await (dummy as Promise<string>));
  return false;
}
