/**
 * What a newcomer does first: `npm start -- --demo`, then the curl lines it prints. `npm
 * start` bundles the server (scripts/bundle.mjs) and runs the bundle with plain node, so
 * this is also the test that the bundle finds what the sources find next to themselves
 * (migrations, the OpenAPI document, the portal, the demo's agent program).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { SERVER_DIR, serverEnv } from './support/server-process.ts';

const run = promisify(execFile);

/** The banner's curl lines and API address, once the demo says it is ready. */
function demoBanner(
  child: ChildProcess,
  timeoutMs: number,
): Promise<{ curls: string[]; api: string }> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`no demo banner after ${timeoutMs} ms:\n${out.slice(-2000)}`)),
      timeoutMs,
    );
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const lines = out.split('\n');
      const curls = lines.filter((line) => line.startsWith('  curl '));
      const api = /--api-url (http:\/\/\S+)\n/.exec(out)?.[1];
      if (out.includes('IPCola demo is ready') && curls.length === 3 && api) {
        clearTimeout(timer);
        resolve({ curls: curls.map((line) => line.trim()), api });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`npm start exited with ${code} before the banner:\n${out.slice(-2000)}`));
    });
  });
}

/** Command lines of the processes in one process group. */
async function processGroup(pgid: number): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 5 of stat is the process group; the command name (2) may hold spaces.
      const statLine = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid) continue;
      found.push((await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').join(' '));
    } catch {
      // The process ended while it was being read.
    }
  }
  return found;
}

describe('npm start -- --demo', () => {
  let scratch: string;
  let npm: ChildProcess;
  let curls: string[];
  let api: string;
  let exited: Promise<unknown>;
  const started = Date.now();

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ipcola-demo-'));
    // Its own process group: npm does not pass SIGTERM on, so the test stops the group.
    npm = spawn('npm', ['start', '--', '--demo'], {
      cwd: SERVER_DIR,
      env: serverEnv({ DATA_DIR: scratch }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    exited = once(npm, 'exit');
    ({ curls, api } = await demoBanner(npm, 90_000));
  });

  after(async () => {
    if (npm.pid !== undefined && npm.exitCode === null) process.kill(-npm.pid, 'SIGTERM');
    await exited;
    await rm(scratch, { recursive: true, force: true });
  });

  test('runs the freshly built bundle with plain node, no TypeScript loader', async () => {
    const bundle = await stat(path.join(SERVER_DIR, 'dist', 'main.js'));
    assert.ok(bundle.mtimeMs >= started - 1_000, 'npm start built dist/main.js');
    const commands = await processGroup(npm.pid as number);
    const server = commands.filter(
      (command) =>
        /(^|\/)node$/.test(command.split(' ')[0] ?? '') && command.includes('dist/main.js'),
    );
    assert.equal(server.length, 1, commands.join('\n'));
    assert.ok(!server[0]?.includes('tsx'), server[0]);
  });

  test('the printed curl lines reach the target through the countries they name', async () => {
    const answers: string[] = [];
    for (const line of curls) {
      const [command, ...args] = line.split(' ');
      assert.equal(command, 'curl');
      const { stdout } = await run('curl', ['-s', '--max-time', '15', ...args]);
      answers.push(stdout.trim());
    }
    assert.equal(answers[0], 'you reached this target from 127.0.0.12');
    assert.match(answers[1] ?? '', /^you reached this target from 127\.0\.0\.1[34]$/);
    assert.match(answers[2] ?? '', /^you reached this target from 127\.0\.0\.1[34]$/);
  });

  test('the bundle serves the OpenAPI document and the portal it finds beside the sources', async () => {
    const document = await fetch(`${api}/openapi.yaml`);
    assert.equal(document.status, 200);
    assert.match(await document.text(), /^openapi: 3\./);
    const portal = await fetch(`${api}/`);
    assert.equal(portal.status, 200);
    assert.match(await portal.text(), /<div id="app">|<script/);
    assert.equal((await fetch(`${api}/readyz`)).status, 200);
  });
});
