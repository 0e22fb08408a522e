import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { type Database, INT8_OID, parseInt8 } from './database.ts';
import {
  clearDirectory,
  holdsCluster,
  PGLITE_TEMPLATE,
  readPgliteTemplate,
} from './pglite-template.ts';

/**
 * Embedded PostgreSQL (PGlite) persisted under dataDir, or in memory when dataDir is null.
 * PGlite serialises queries itself, so one instance is shared by the whole process.
 */
export async function openPglite(
  dataDir: string | null,
  /** A dump of a fresh cluster to start an empty directory from (see pglite-template.ts). */
  templateFile = PGLITE_TEMPLATE,
): Promise<Database> {
  let location: string | undefined;
  if (dataDir !== null) {
    location = path.join(dataDir, 'pglite');
    await mkdir(location, { recursive: true });
  }
  const options = { parsers: { [INT8_OID]: parseInt8 } };
  const template =
    location && holdsCluster(location) ? null : await readPgliteTemplate(templateFile);
  let db: PGlite;
  if (template) {
    try {
      db = await PGlite.create(location, { ...options, loadDataDir: template });
    } catch {
      // A damaged template must not stop the server: start from initdb as if it were absent.
      if (location) await clearDirectory(location);
      db = await PGlite.create(location, options);
    }
  } else {
    db = await PGlite.create(location, options);
  }

  return {
    engine: 'pglite',
    query: async <Row>(sql: string, params?: readonly unknown[]) =>
      (await db.query<Row>(sql, params as unknown[])).rows,
    exec: async (sql) => {
      await db.exec(sql);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: async <Row>(sql: string, params?: readonly unknown[]) =>
            (await tx.query<Row>(sql, params as unknown[])).rows,
          exec: async (sql) => {
            await tx.exec(sql);
          },
        }),
      ),
    async ping() {
      if (db.closed) throw new Error('database is closed');
      await db.query('SELECT 1');
    },
    async close() {
      if (!db.closed) await db.close();
    },
  };
}
