/**
 * Code a user writes, which must compile: the types of every answer come from the API
 * document. Compiled by the type test (and by `npm run lint`), never run.
 */
import {
  type ErrorCode,
  IPCola,
  IPColaError,
  NotFoundError,
  QuotaExhaustedError,
  type RequestOptions,
} from '../../src/index.ts';

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(_: Equal<A, B>) => undefined;

export async function examples(): Promise<void> {
  const ipc = new IPCola({ apiKey: process.env.IPCOLA_KEY, maxRetries: 3, timeout: 10_000 });

  // The five lines: through a German exit, and a sticky identity.
  const res = await ipc.fetch('https://example.com', { country: 'de', method: 'GET' });
  same<typeof res.status, number>(true);
  const sticky = ipc.session({ country: 'us', ttl: '10m' });
  await sticky.fetch('https://example.com/a');
  sticky.rotate();
  const proxy: string = ipc.proxyUrl({ country: 'us', session: 'job42', ttl: 600 });
  const browser: { server: string; username: string; password: string } = ipc.playwrightProxy({
    city: 'new_york',
  });
  void [proxy, browser];
  const { keyId, secret, proxyUrl, socksUrl, apiUrl } = ipc.config;
  same<[typeof keyId, typeof secret, typeof proxyUrl], [string, string, string]>(true);
  same<[typeof socksUrl, typeof apiUrl], [string, string]>(true);

  for await (const key of ipc.keys.list()) {
    same<typeof key.id, string>(true);
    same<typeof key.scopes, ('proxy' | 'api')[]>(true);
  }
  const page = await ipc.keys.list({ limit: 50 });
  same<typeof page.next_cursor, string | null>(true);
  for await (const onePage of ipc.leases.list().pages()) void onePage.items;

  const lease = await ipc.leases.create({ country: 'us', ttl_seconds: 3600 });
  // The same fields in camelCase, as the example writes them.
  await ipc.leases.create({ country: 'us', ttlSeconds: 3600, keyId: 'k' });
  await ipc.usage.list({ keyId: 'k', granularity: 'day' });
  same<typeof lease.proxy_username, string>(true);
  await ipc.leases.renew(lease.id, { ttl_seconds: 600 });
  await ipc.leases.release(lease.id);

  const created = await ipc.keys.create({ name: 'scraper', scopes: ['proxy'] });
  same<typeof created.secret, string>(true);
  const revoked = await ipc.keys.revoke(created.id, {
    idempotencyKey: 'revoke-scraper-key',
    maxRetries: 0,
    timeout: 5_000,
    signal: AbortSignal.timeout(10_000),
  });
  same<typeof revoked, void>(true);

  const list = await ipc.proxyLists.create({ country: 'us', count: 100, format: 'url' });
  same<typeof list.proxies, string[]>(true);
  const csv = await ipc.usage.exportCsv({ granularity: 'day' });
  same<typeof csv, string>(true);
  const report = await ipc.usage.list({ granularity: 'hour' });
  same<typeof report.totals.bytes_down, number>(true);
  const me = await ipc.me();
  same<typeof me.account.id, string>(true);

  // The raw typed client reaches any operation of the document.
  const { data } = await ipc.api.GET('/v1/keys/{id}', { params: { path: { id: created.id } } });
  void data?.name;

  const options: RequestOptions = { timeout: 1 };
  try {
    await ipc.keys.get('k', options);
  } catch (error) {
    if (error instanceof NotFoundError) {
      same<typeof error.status, number | undefined>(true);
      same<typeof error.requestId, string | undefined>(true);
    }
    if (error instanceof QuotaExhaustedError) void error.retryAfter;
    if (error instanceof IPColaError) {
      const code: ErrorCode | 'connection_error' | 'timeout' | 'aborted' = error.code;
      void code;
    }
  }
}
