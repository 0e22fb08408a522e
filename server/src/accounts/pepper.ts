import { randomBytes } from 'node:crypto';
import type { Queryable } from '../store/index.ts';

const PEPPER_SETTING = 'pepper';
const SECRET_BYTES = 32;

/**
 * The server secret that keys the hashes of API key secrets and node tokens. Made once
 * with 32 random bytes and kept in `settings`; several servers starting at once all
 * insert-if-absent and then read, so they all end up with the one that won.
 */
export function loadOrCreatePepper(db: Queryable): Promise<Buffer> {
  return loadOrCreateServerSecret(db, PEPPER_SETTING);
}

/**
 * A 32-byte server secret named `name` in `settings`, kept exactly like the pepper: made
 * once at random, the same for every server sharing the database.
 */
export async function loadOrCreateServerSecret(db: Queryable, name: string): Promise<Buffer> {
  await db.query(
    'INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
    [name, randomBytes(SECRET_BYTES).toString('base64url')],
  );
  const [row] = await db.query<{ value: string }>('SELECT value FROM settings WHERE name = $1', [
    name,
  ]);
  const secret = Buffer.from(row?.value ?? '', 'base64url');
  if (secret.length !== SECRET_BYTES) {
    throw new Error(`settings.${name} is not ${SECRET_BYTES} bytes of base64url`);
  }
  return secret;
}
