/**
 * The cluster's people, made through the API as anyone would: an operator account that
 * registers the exit nodes, and a customer account with a key for the proxy and the API.
 */
import { randomBytes } from 'node:crypto';

export interface ApiKey {
  readonly id: string;
  readonly secret: string;
}

export interface Operator {
  readonly email: string;
  readonly password: string;
  /** Registers an agent node; its token is in this answer only. */
  registerNode(name: string): Promise<{ id: string; token: string }>;
}

export interface Customer {
  readonly email: string;
  readonly password: string;
  readonly key: ApiKey;
}

/** A signed-in session on the API at `base`: the cookie and CSRF token sent with each call. */
async function signUp(base: string, role: string) {
  const email = `cluster-${role}-${randomBytes(4).toString('hex')}@ipcola.invalid`;
  const password = randomBytes(18).toString('base64url');
  const answer = await fetch(`${base}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (answer.status !== 201) {
    throw new Error(`signing up the ${role}: ${answer.status} ${await answer.text()}`);
  }
  const cookie = (answer.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const { csrf_token: csrf } = (await answer.json()) as { csrf_token: string };
  const post = async <T>(pathname: string, body: unknown): Promise<T> => {
    const response = await fetch(`${base}${pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    });
    if (response.status !== 201) {
      throw new Error(`POST ${pathname}: ${response.status} ${await response.text()}`);
    }
    return (await response.json()) as T;
  };
  return { email, password, post };
}

export async function createOperator(apiBase: string): Promise<Operator> {
  const { email, password, post } = await signUp(apiBase, 'operator');
  return {
    email,
    password,
    registerNode: (name) => post<{ id: string; token: string }>('/v1/nodes', { name }),
  };
}

export async function createCustomer(apiBase: string): Promise<Customer> {
  const { email, password, post } = await signUp(apiBase, 'customer');
  // Both scopes, as the demo's: the same key drives the proxy and the API (SDK, CLI).
  const key = await post<ApiKey>('/v1/keys', { name: 'cluster', scopes: ['proxy', 'api'] });
  return { email, password, key: { id: key.id, secret: key.secret } };
}
