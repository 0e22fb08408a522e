import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';

/*
 * A new PGlite cluster runs initdb in WebAssembly: 10-15 s on a 2-core machine, which
 * would make the first `npm start` miss its 5-second budget. Loading a dump of a fresh
 * cluster takes about 3 s. So `npm install` writes that dump once (postinstall), keyed by
 * the PGlite version, and an empty DATA_DIR starts from it. Without the dump (a failed
 * postinstall, a read-only node_modules) start-up still works, only slower.
 */

// The package does not export its package.json: find it from the entry point it does export.
const pgliteEntry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
const modulesDir = pgliteEntry.slice(
  0,
  pgliteEntry.lastIndexOf(`${path.sep}node_modules${path.sep}`),
);
const pgliteVersion = (
  JSON.parse(
    readFileSync(
      path.join(modulesDir, 'node_modules', '@electric-sql', 'pglite', 'package.json'),
      'utf8',
    ),
  ) as { version: string }
).version;

/** `node_modules/.cache/ipcola/pglite-<version>.tar`, beside the PGlite that made it. */
export const PGLITE_TEMPLATE = path.join(
  modulesDir,
  'node_modules',
  '.cache',
  'ipcola',
  `pglite-${pgliteVersion}.tar`,
);

/** Dumps a freshly initialised cluster to `file` (written whole, then renamed into place). */
export async function writePgliteTemplate(file = PGLITE_TEMPLATE): Promise<void> {
  const db = await PGlite.create();
  try {
    const dump = await db.dumpDataDir('none');
    await mkdir(path.dirname(file), { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
    await rename(partial, file);
  } finally {
    await db.close();
  }
}

/**
 * The dump, when there is one for this PGlite version and it is a tar archive. PGlite
 * takes anything else for gzip and its inflate error escapes as an unhandled rejection,
 * so a damaged file is refused here and start-up falls back to initdb.
 */
export async function readPgliteTemplate(file = PGLITE_TEMPLATE): Promise<Blob | null> {
  if (!existsSync(file)) return null;
  const dump = await readFile(file);
  if (dump.subarray(257, 262).toString('latin1') !== 'ustar') return null;
  return new Blob([dump], { type: 'application/x-tar' });
}

/** True when `location` already holds a cluster (initdb writes PG_VERSION first). */
export function holdsCluster(location: string): boolean {
  return existsSync(path.join(location, 'PG_VERSION'));
}

/** Empties a directory a failed template load may have half-filled. */
export async function clearDirectory(location: string): Promise<void> {
  await rm(location, { recursive: true, force: true });
  await mkdir(location, { recursive: true });
}
