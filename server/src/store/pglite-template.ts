import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
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

/**
 * Unpacks the dump into `location` (an empty directory) and says whether it could. PGlite
 * can load the dump itself (`loadDataDir`), but then keeps the 40 MB archive alive for the
 * process's life, twice (the file's bytes and the Blob's copy): 87 MB of RSS measured at
 * rest on 2026-12-06. Unpacked here, the bytes pass through one 1 MB buffer. The files go
 * to a sibling directory first and are renamed into place once whole, so a start cut
 * short never leaves a half cluster that later looks like a real one.
 */
export async function extractPgliteTemplate(
  file: string | null,
  location: string,
): Promise<boolean> {
  if (file === null || !existsSync(file)) return false;
  const partial = `${location}.${process.pid}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(1024 * 1024);
    let offset = 0;
    const read = async (length: number) => {
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      offset += bytesRead;
      return bytesRead;
    };
    for (let entries = 0; ; entries++) {
      if ((await read(512)) < 512) throw new Error('truncated header');
      const header = Buffer.from(buffer.subarray(0, 512));
      if (header.every((byte) => byte === 0)) break; // the end-of-archive block
      if (header.subarray(257, 262).toString('latin1') !== 'ustar') throw new Error('not ustar');
      const field = (from: number, length: number) =>
        header
          .subarray(from, from + length)
          .toString('utf8')
          .replace(/\0.*$/s, '');
      const prefix = field(345, 155);
      const name = path.posix.normalize(`${prefix ? `${prefix}/` : ''}${field(0, 100)}`);
      const size = Number.parseInt(field(124, 12).trim() || '0', 8);
      const type = field(156, 1) || '0';
      const relative = name.replace(/^\/+/, '');
      if (!Number.isSafeInteger(size) || relative.split('/').includes('..')) {
        throw new Error(`unsafe entry ${name}`);
      }
      const target = path.join(partial, relative);
      if (type === '5') {
        await mkdir(target, { recursive: true });
      } else if (type === '0') {
        await mkdir(path.dirname(target), { recursive: true });
        const out = await open(target, 'w', 0o600);
        try {
          for (let left = size; left > 0; ) {
            const got = await read(Math.min(left, buffer.length));
            if (got === 0) throw new Error(`truncated ${name}`);
            await out.write(buffer, 0, got);
            left -= got;
          }
        } finally {
          await out.close();
        }
        offset += (512 - (size % 512)) % 512;
      } else {
        throw new Error(`entry ${name} has type ${type}, not a file or directory`);
      }
      if (entries > 100_000) throw new Error('too many entries');
    }
    if (!holdsCluster(partial)) throw new Error('no PG_VERSION');
    await rm(location, { recursive: true, force: true });
    await rename(partial, location);
    return true;
  } catch {
    await rm(partial, { recursive: true, force: true });
    return false;
  } finally {
    await handle.close();
  }
}
