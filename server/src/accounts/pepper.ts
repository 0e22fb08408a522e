import { randomBytes } from 'node:crypto';
import type { Queryable } from '../store/index.ts';

const PEPPER_SETTING = 'pepper';
const PEPPER_BYTES = 32;

/**
 * The server secret that keys the hashes of API key secrets and node tokens. Made once
 * with 32 random bytes and kept in `settings`; several servers starting at once all
 * insert-if-absent and then read, so they all end up with the one that won.
 */
export async function loadOrCreatePepper(db: Queryable): Promise<Buffer> {
  await db.query(
    'INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
    [PEPPER_SETTING, randomBytes(PEPPER_BYTES).toString('base64url')],
  );
  const [row] = await db.query<{ value: string }>('SELECT value FROM settings WHERE name = $1', [
    PEPPER_SETTING,
  ]);
  const pepper = Buffer.from(row?.value ?? '', 'base64url');
  if (pepper.length !== PEPPER_BYTES) {
    throw new Error(`settings.${PEPPER_SETTING} is not ${PEPPER_BYTES} bytes of base64url`);
  }
  return pepper;
}
