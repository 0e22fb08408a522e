import { randomBytes } from 'node:crypto';
import type { Queryable } from './database.ts';

const SETTING = 'deployment';

/**
 * This deployment's name, made once at random and kept in the database: every instance
 * sharing the database shares it. Hot state keys start with it, so that deployments (or
 * test runs) sharing one Redis but not one database never flush, lease or count each
 * other's state.
 */
export async function deploymentName(db: Queryable): Promise<string> {
  await db.query(
    'INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
    [SETTING, randomBytes(6).toString('hex')],
  );
  const [row] = await db.query<{ value: string }>('SELECT value FROM settings WHERE name = $1', [
    SETTING,
  ]);
  if (!row || !/^[0-9a-f]{12}$/.test(row.value)) {
    throw new Error(`settings.${SETTING} is not 12 hexadecimal digits`);
  }
  return row.value;
}
