import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { Database } from './database.ts';

/** Where the ordered SQL files live; the same files run on PGlite and PostgreSQL. */
export const MIGRATIONS_DIR = new URL('../../../migrations/', import.meta.url);

// Any fixed number: every server instance takes the same lock, so concurrent start-ups queue.
const MIGRATION_LOCK = 7_370_342_001;

export class MigrationError extends Error {
  readonly code = 'migration_failed';
  constructor(
    readonly version: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`migration ${version}: ${message}`, options);
    this.name = 'MigrationError';
  }
}

interface MigrationFile {
  version: string;
  sql: string;
  checksum: string;
}

/**
 * Applies every migration not yet recorded, in file-name order, each in its own
 * transaction together with its record. Returns the versions applied now.
 * A recorded migration whose file changed afterwards stops start-up: history is not rewritten.
 */
export async function migrate(db: Database, dir: URL = MIGRATIONS_DIR): Promise<string[]> {
  const files = await readMigrations(dir);
  const applied: string[] = [];
  for (const file of files) {
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const [existing] = await tx.query<{ checksum: string }>(
        'SELECT checksum FROM schema_migrations WHERE version = $1',
        [file.version],
      );
      if (existing) {
        if (existing.checksum !== file.checksum) {
          throw new MigrationError(
            file.version,
            'was changed after it was applied; add a new migration instead',
          );
        }
        return false;
      }
      try {
        await tx.exec(file.sql);
      } catch (error) {
        throw new MigrationError(file.version, (error as Error).message, { cause: error });
      }
      await tx.query('INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)', [
        file.version,
        file.checksum,
      ]);
      return true;
    });
    if (ran) applied.push(file.version);
  }
  return applied;
}

async function readMigrations(dir: URL): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => /^\d{4}_[a-z0-9_]+\.sql$/.test(name)).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(new URL(name, dir), 'utf8');
      return {
        version: name.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    }),
  );
}
