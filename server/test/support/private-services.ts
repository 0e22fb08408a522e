/**
 * Private PostgreSQL and Redis servers on free ports, owned by one test, so that it can
 * stop and restart them under a running IPCola without touching the shared services.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

export interface PrivateService {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  dispose(): Promise<void>;
}

/** A throw-away PostgreSQL cluster (initdb) run as the postgres user. */
export async function privatePostgres(): Promise<PrivateService> {
  const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
  const bin = `/usr/lib/postgresql/${versions[0]}/bin`;
  const dir = await mkdtemp(path.join(tmpdir(), 'ipcola-pg-'));
  const { stdout: ids } = await run('id', ['-u', 'postgres']);
  const { stdout: gids } = await run('id', ['-g', 'postgres']);
  await chown(dir, Number(ids), Number(gids));
  const port = await freePort();
  const asPostgres = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', `${bin}/${cmd}`, ...args]);
  await asPostgres('initdb', ['-D', `${dir}/data`, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const service: PrivateService = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await asPostgres('pg_ctl', [
        '-D',
        `${dir}/data`,
        '-o',
        options,
        '-l',
        `${dir}/log`,
        '-w',
        'start',
      ]);
    },
    async stop() {
      await asPostgres('pg_ctl', ['-D', `${dir}/data`, '-m', 'fast', '-w', 'stop']);
    },
    async dispose() {
      await service.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  await service.start();
  return service;
}

/**
 * A throw-away redis-server. By default it keeps nothing on disk; `appendOnly` gives it an
 * append-only file in a temporary directory, as production runs it, so that a restart (even
 * after SIGKILL: every write reaches the file before its reply) finds everything again.
 */
export async function privateRedis({ appendOnly = false } = {}): Promise<PrivateService> {
  const port = await freePort();
  const dir = appendOnly ? await mkdtemp(path.join(tmpdir(), 'ipcola-redis-')) : undefined;
  const persistence = dir
    ? ['--appendonly', 'yes', '--appendfsync', 'no', '--dir', dir]
    : ['--appendonly', 'no'];
  let child: ChildProcess | undefined;
  const service: PrivateService = {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let output = '';
      child.stdout?.setEncoding('utf8');
      for await (const chunk of child.stdout as AsyncIterable<string>) {
        output += chunk;
        if (output.includes('Ready to accept connections')) break;
      }
      child.stdout?.resume();
    },
    async stop() {
      if (!child || child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL'); // the harshest restart: no goodbye to clients
      await exited;
    },
    async dispose() {
      await service.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
  await service.start();
  return service;
}
