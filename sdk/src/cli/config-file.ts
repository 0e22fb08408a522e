/**
 * Where `ipcola login` keeps the key: `$XDG_CONFIG_HOME/ipcola/config.json` (else
 * `~/.config/ipcola/config.json`), readable by its owner only since it holds a secret.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

export interface StoredConfig {
  apiKey?: string;
  apiUrl?: string;
  proxyUrl?: string;
  socksUrl?: string;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME?.trim() || path.join(env.HOME?.trim() || homedir(), '.config');
  return path.join(base, 'ipcola', 'config.json');
}

export async function readStoredConfig(file: string): Promise<StoredConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  const parsed: unknown = JSON.parse(text);
  return typeof parsed === 'object' && parsed !== null ? (parsed as StoredConfig) : {};
}

/** Written beside and renamed over, so a crash never leaves half a file; 0600 from the start. */
export async function writeStoredConfig(file: string, config: StoredConfig): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // The mode above is masked by the umask; the file must be the owner's alone whatever it is.
  await chmod(temporary, 0o600);
  await rename(temporary, file);
}
