/** Answers shaped as the API gives them, typed by the OpenAPI document's schemas. */
import type { components } from '@ipcola/openapi';

type Schemas = components['schemas'];

export const ACCOUNT: Schemas['Account'] = {
  id: 'acc_1',
  balance: { currency: 'usd', amount_micro: 12_500_000, amount: '12.50' },
  created_at: '2026-12-01T00:00:00Z',
};

export const SESSION: Schemas['SessionStarted'] = {
  account: ACCOUNT,
  user: { id: 'usr_1', email: 'ada@example.com' },
  csrf_token: 'csrf-from-login',
};

export function key(id: string, name: string): Schemas['Key'] {
  return {
    id,
    name,
    scopes: ['proxy'],
    disabled: false,
    monthly_byte_cap: null,
    max_concurrency: null,
    allowed_countries: null,
    client_allowlist: null,
    passwordless_cidrs: [],
    default_targeting: '',
    created_at: '2026-12-01T00:00:00Z',
    updated_at: '2026-12-01T00:00:00Z',
  };
}

export function errorBody(code: Schemas['ErrorCode'], message: string): Schemas['Error'] {
  return { error: { code, message } };
}
