/** Runs the real server as a child process from its sources (tsx); `npm start` runs the same sources bundled (see npm-start-demo-…test.ts). */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const SERVER_DIR = fileURLToPath(new URL('../../', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  ports: { api: number };
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Environment for a server on free ports with nothing inherited that could change its behaviour. */
export function serverEnv(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    API_PORT: '0',
    PROXY_PORT: '0',
    SOCKS_PORT: '0',
    HUB_PORT: '0',
    LOG_LEVEL: 'info',
    // One instance per test server unless a test asks for workers.
    WORKERS: '1',
    // Every answer the tests get is checked against the OpenAPI document.
    STRICT_API_ANSWERS: 'true',
    // Tests sign up many accounts from 127.0.0.1; the limit has a test of its own.
    SIGNUP_LIMIT_PER_HOUR: '1000',
  };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** Spawns the server and captures its output; does not wait for it to be up. */
export function spawnServer(env: NodeJS.ProcessEnv, args: string[] = []) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: SERVER_DIR,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const logs: Array<Record<string, unknown>> = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    let newline = stdout.indexOf('\n');
    while (newline >= 0) {
      const line = stdout.slice(0, newline);
      stdout = stdout.slice(newline + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ raw: line });
      }
      child.emit('log', logs.at(-1));
      newline = stdout.indexOf('\n');
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, logs, stderr: () => stderr, exited };
}

/** Spawns the server and resolves once it reports its ports; rejects if it exits first. */
export async function startServer(
  env: NodeJS.ProcessEnv,
  args: string[] = [],
  timeoutMs = 45_000,
): Promise<ServerProcess> {
  const spawned = spawnServer(env, args);
  const up = new Promise<{ api: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server not up after ${timeoutMs} ms`)),
      timeoutMs,
    );
    spawned.child.on('log', (line: Record<string, unknown>) => {
      if (line.ports) {
        clearTimeout(timer);
        resolve(line.ports as { api: number });
      }
    });
    spawned.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before it was up: ${spawned.stderr()}`));
    });
  });
  let ports: { api: number };
  try {
    ports = await up;
  } catch (error) {
    spawned.child.kill('SIGKILL');
    throw error;
  }
  return {
    ...spawned,
    ports,
    async stop(signal = 'SIGTERM') {
      if (spawned.child.exitCode !== null || spawned.child.signalCode !== null) {
        return spawned.child.exitCode;
      }
      spawned.child.kill(signal);
      return spawned.exited;
    },
  };
}

/** fetch on one server's API, signed in as one user (session cookie and CSRF token sent). */
export type SignedInApi = (pathname: string, init?: RequestInit) => Promise<Response>;

/**
 * Signs a new user up on the server at `apiPort` and answers with a fetch signed in as them.
 * Give a function for a server that restarts on another port: the session, kept in the
 * database, outlives the process.
 */
export async function signedInApi(
  apiPort: number | (() => number),
  email: string,
  password = 'a long enough password',
): Promise<SignedInApi> {
  const base = () => `http://127.0.0.1:${typeof apiPort === 'number' ? apiPort : apiPort()}`;
  const signup = await fetch(`${base()}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${await signup.text()}`);
  const cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const { csrf_token: csrf } = (await signup.json()) as { csrf_token: string };
  return (pathname, init = {}) =>
    fetch(`${base()}${pathname}`, {
      ...init,
      headers: {
        'content-type': 'application/json',
        cookie,
        'x-csrf-token': csrf,
        ...(init.headers ?? {}),
      },
    });
}
