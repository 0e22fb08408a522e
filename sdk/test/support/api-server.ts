/**
 * A real IPCola server for the SDK's tests (the process `npm start` runs, on free ports,
 * with its own data directory), an account signed up on it and a key with the `api`
 * scope. With `demo`, the server also runs its three exit nodes and a local target.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type ServerProcess,
  type SignedInApi,
  serverEnv,
  signedInApi,
  startServer,
} from '@ipcola/server/testing';

export interface ApiServer {
  server: ServerProcess;
  ports: { api: number; proxy: number; socks: number; hub: number };
  apiUrl: string;
  /** `KEYID.SECRET` of a `proxy` + `api` key of the signed-up account. */
  apiKey: string;
  key: { id: string; secret: string };
  /** The account's portal session, for what a key cannot see. */
  portal: SignedInApi;
  /** With `demo`: the local target that answers with the address it was reached from. */
  targetUrl?: string;
  close(): Promise<void>;
}

/** PGlite migrations and, with the demo, three agents on a machine shared with other tests. */
const START_MS = 90_000;

export async function startApiServer(
  options: { demo?: boolean; env?: Record<string, string> } = {},
): Promise<ApiServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-sdk-'));
  const server = await startServer(
    serverEnv({ DATA_DIR: dataDir, ...options.env }),
    options.demo ? ['--demo'] : [],
    START_MS,
  );
  try {
    const ports = server.ports as ApiServer['ports'];
    const targetUrl = options.demo ? await demoTarget(server) : undefined;
    const portal = await signedInApi(ports.api, `sdk-${randomUUID()}@example.com`);
    const created = await portal('/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ name: 'sdk tests', scopes: ['proxy', 'api'] }),
    });
    if (created.status !== 201) throw new Error(`key: ${created.status} ${await created.text()}`);
    const key = (await created.json()) as { id: string; secret: string };
    return {
      server,
      ports,
      apiUrl: `http://127.0.0.1:${ports.api}`,
      apiKey: `${key.id}.${key.secret}`,
      key,
      portal,
      ...(targetUrl ? { targetUrl } : {}),
      async close() {
        await server.stop();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await server.stop('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}

/** The demo prints its banner once its nodes are up; the target's URL is in it. */
function demoTarget(server: ServerProcess): Promise<string> {
  const find = () => {
    for (const line of server.logs) {
      const match =
        typeof line.raw === 'string' ? /local target at (http:\/\/\S+?)\.? /.exec(line.raw) : null;
      if (match?.[1]) return match[1];
    }
    return undefined;
  };
  return new Promise((resolve, reject) => {
    const found = find();
    if (found) return resolve(found);
    const timer = setTimeout(() => reject(new Error('the demo did not start')), START_MS);
    const onLog = () => {
      const url = find();
      if (!url) return;
      clearTimeout(timer);
      server.child.off('log', onLog);
      resolve(url);
    };
    server.child.on('log', onLog);
    void server.exited.then(() => reject(new Error(`the server exited: ${server.stderr()}`)));
  });
}
