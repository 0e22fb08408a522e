/**
 * Code that must NOT compile: each line marked `// TSxxxx` must fail with that error and no
 * other line may fail. Checked by the type test; left out of the workspace's tsconfig.
 */
import { IPCola, NotFoundError } from '../../src/index.ts';

export async function mistakes(ipc: IPCola): Promise<void> {
  await ipc.leases.create({ country: 'us', ttl: 3600 }); // TS2353
  await ipc.leases.create({ ttlSeconds: '1h' }); // TS2322
  await ipc.keys.create({ scopes: ['root'] }); // TS2322
  await ipc.proxyLists.create({ format: 'xml' }); // TS2322
  await ipc.keys.get(42); // TS2345
  const name: number = (await ipc.keys.get('k')).name; // TS2322
  await ipc.keys.list({ limit: '10' }); // TS2322
  await ipc.keys.revoke('k', { retries: 3 }); // TS2353
  await ipc.kees.list(); // TS2339
  await ipc.fetch('https://example.com', { country: 49 }); // TS2322
  ipc.proxyUrl({ type: 'satellite' }); // TS2322
  await ipc.api.GET('/v1/no-such-path'); // TS2554
  new IPCola({ apiKey: 42 }); // TS2322
  for await (const key of ipc.keys.list()) key.secret; // TS2339
  const error = new NotFoundError('not_found', 'gone');
  if (error.code === 'no_such_code') return; // TS2367
  void name;
}
