import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../config/index.ts';

const LOCK_FILE = 'ipcola.pid';

/**
 * Makes sure DATA_DIR is a writable directory and that no other live IPCola process
 * uses it (two PGlite instances on one directory would corrupt it). Returns the release.
 */
export async function claimDataDir(dir: string): Promise<() => Promise<void>> {
  try {
    await mkdir(dir, { recursive: true });
    if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
  } catch (error) {
    throw new ConfigError('DATA_DIR', `${dir} cannot be used: ${describe(error)}`);
  }
  const lockPath = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await rm(lockPath, { force: true });
      };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        throw new ConfigError('DATA_DIR', `${dir} is not writable: ${describe(error)}`);
      }
      const holder = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
        throw new ConfigError(
          'DATA_DIR',
          `${dir} is in use by another IPCola process (pid ${holder}); stop it or choose another DATA_DIR`,
        );
      }
      await rm(lockPath, { force: true }); // left behind by a process that is gone
    }
  }
  throw new ConfigError('DATA_DIR', `${dir}: could not take the lock file ${LOCK_FILE}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describe(error: unknown): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOTDIR':
    case 'EEXIST':
      return 'a file is in the way (not a directory)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'read-only file system';
    case 'ENOSPC':
      return 'no space left on device';
    default:
      return (error as NodeJS.ErrnoException).code ?? 'unknown error';
  }
}
