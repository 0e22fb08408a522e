import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { type Database, INT8_OID, parseInt8 } from './database.ts';

/**
 * Embedded PostgreSQL (PGlite) persisted under dataDir, or in memory when dataDir is null.
 * PGlite serialises queries itself, so one instance is shared by the whole process.
 */
export async function openPglite(dataDir: string | null): Promise<Database> {
  let location: string | undefined;
  if (dataDir !== null) {
    location = path.join(dataDir, 'pglite');
    await mkdir(location, { recursive: true });
  }
  const db = await PGlite.create(location, {
    parsers: { [INT8_OID]: parseInt8 },
  });

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
