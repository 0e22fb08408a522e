/** Runs the `ipcola` CLI as a process with its own HOME and config dir; answers what it printed. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export async function runCli(
  command: string[],
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
  cwd?: string,
): Promise<CliResult> {
  const [file, ...rest] = command;
  const child = spawn(file ?? process.execPath, [...rest, ...args], {
    env,
    ...(cwd ? { cwd } : {}),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.end(input ?? '');
  const [status] = (await once(child, 'close')) as [number | null];
  return { status, stdout, stderr };
}
