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

/**
 * `node_modules/.cache/ipcola/pglite-<version>.tar`, beside the PGlite that makes it; null
 * when PGlite is not installed under a node_modules folder (then there is no template).
 */
export const PGLITE_TEMPLATE = locateTemplate();

function locateTemplate(): string | null {
  try {
    // The package does not export its package.json: walk up from the entry it exports.
    let dir = path.dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
    for (;;) {
      const manifest = path.join(dir, 'package.json');
      if (existsSync(manifest)) {
        const { name, version } = JSON.parse(readFileSync(manifest, 'utf8'));
        if (name === '@electric-sql/pglite') {
          const modules = path.dirname(path.dirname(dir));
          if (path.basename(modules) !== 'node_modules') return null;
          return path.join(modules, '.cache', 'ipcola', `pglite-${version}.tar`);
        }
      }
      const up = path.dirname(dir);
      if (up === dir) return null;
      dir = up;
    }
  } catch {
    return null;
  }
}

/** Dumps a freshly initialised cluster to `file` (written whole, then renamed into place). */
export async function writePgliteTemplate(file: string): Promise<void> {
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
export async function readPgliteTemplate(file: string | null): Promise<Blob | null> {
  if (file === null || !existsSync(file)) return null;
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
