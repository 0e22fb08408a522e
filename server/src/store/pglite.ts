import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { PGlite } from '@electric-sql/pglite';
import { type Database, INT8_OID, parseInt8 } from './database.ts';
import {
  clearDirectory,
  extractPgliteTemplate,
  holdsCluster,
  PGLITE_TEMPLATE,
  readPgliteTemplate,
} from './pglite-template.ts';

/*
 * Memory at rest, measured on 2026-12-06 (a started server, empty DATA_DIR, RSS once
 * settled): 536 MB with PGlite's defaults. PGlite starts PostgreSQL with initdb's
 * shared_buffers of 128 MB, and the buffer pool lives in WebAssembly memory, which never
 * shrinks once touched. The embedded database is for one machine's trial and small
 * deployments (a few MB of rows): an 8 MB pool holds its hot pages, and a miss is a read
 * from the operating system's cache. maintenance_work_mem (64 MB) bounds what a CREATE
 * INDEX in a migration touches. Together: -170 MB (16 MB instead of 8: 10 MB more).
 */
const START_PARAMS = [
  ...PGlite.defaultStartParams,
  '-c',
  'shared_buffers=8MB',
  '-c',
  'maintenance_work_mem=8MB',
];

/**
 * V8 compiles PGlite's 9 MB WebAssembly module twice: first with its baseline compiler
 * (Liftoff), then hot functions again with TurboFan, whose code stays beside the first:
 * about 60 MB of RSS. With Liftoff only, the store's queries measured no slower here
 * (2,000 INSERT + SELECT pairs: 1.24 s against 1.48 s; the time goes to the protocol
 * round trips, not the SQL). A module keeps the tiering it was compiled with, so the flag
 * is set only while PGlite compiles its modules: undici's HTTP parser (WebAssembly too,
 * compiled later, on the gateway's forwarding path) keeps TurboFan.
 */
async function withBaselineWasmCompiler<T>(compile: () => Promise<T>): Promise<T> {
  setFlagsFromString('--liftoff-only');
  try {
    return await compile();
  } finally {
    setFlagsFromString('--no-liftoff-only');
  }
}

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
  const options = { parsers: { [INT8_OID]: parseInt8 }, startParams: START_PARAMS };
  const db = await withBaselineWasmCompiler(async () => {
    if (!location) {
      const template = await readPgliteTemplate(templateFile);
      return template
        ? await PGlite.create({ ...options, loadDataDir: template })
        : await PGlite.create(options);
    }
    if (holdsCluster(location)) return await PGlite.create(location, options);
    // An empty directory is unpacked from the template. A damaged template must not stop
    // the server: then it starts from initdb as if the template were absent.
    const unpacked = await extractPgliteTemplate(templateFile, location);
    try {
      return await PGlite.create(location, options);
    } catch (error) {
      if (!unpacked) throw error;
      await clearDirectory(location);
      return await PGlite.create(location, options);
    }
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
