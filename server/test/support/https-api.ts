/**
 * The API over https, trusting only a private CA (undici's Agent with `connect.ca`), signed
 * in as a new user. The session lives in the database: any server sharing it honours it.
 */
import { Agent, fetch } from 'undici';

export interface HttpsApi {
  /** fetch on `origin()` with the session cookie and CSRF token; JSON bodies. */
  (
    pathname: string,
    init?: { method?: string; body?: unknown; origin?: string },
  ): Promise<{
    status: number;
    json(): Promise<unknown>;
  }>;
  /** The dispatcher that trusts the CA, for other requests. */
  readonly dispatcher: Agent;
  close(): Promise<void>;
}

export async function signedInOverHttps(origin: string, ca: string): Promise<HttpsApi> {
  const dispatcher = new Agent({ connect: { ca } });
  const signup = await fetch(`${origin}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      email: `tls-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`,
      password: 'a long enough password',
    }),
    dispatcher,
  });
  if (signup.status !== 201) throw new Error(`signup: ${signup.status} ${await signup.text()}`);
  const cookie = (signup.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const { csrf_token: csrf } = (await signup.json()) as { csrf_token: string };
  const api = async (
    pathname: string,
    init: { method?: string; body?: unknown; origin?: string } = {},
  ) =>
    fetch(`${init.origin ?? origin}${pathname}`, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      dispatcher,
    });
  return Object.assign(api, { dispatcher, close: () => dispatcher.close() });
}
