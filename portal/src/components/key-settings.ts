/** The key form's values and the API request they make (kept pure, for tests). */
import type { Schemas } from '../api/client.ts';
import { GB } from '../format.ts';

export interface KeySettings {
  name: string;
  api: boolean;
  /** Empty for no cap. */
  monthlyGb: number | '';
  maxConcurrency: number | '';
  countries: string[];
  allowlist: string[];
  passwordless: string[];
  defaultTargeting: string;
}

export const NEW_KEY: KeySettings = {
  name: '',
  api: false,
  monthlyGb: '',
  maxConcurrency: '',
  countries: [],
  allowlist: [],
  passwordless: [],
  defaultTargeting: '',
};

export function settingsOf(key: Schemas['Key']): KeySettings {
  return {
    name: key.name,
    api: key.scopes.includes('api'),
    monthlyGb: key.monthly_byte_cap === null ? '' : key.monthly_byte_cap / GB,
    maxConcurrency: key.max_concurrency ?? '',
    countries: key.allowed_countries ?? [],
    allowlist: key.client_allowlist ?? [],
    passwordless: key.passwordless_cidrs,
    defaultTargeting: key.default_targeting,
  };
}

/** `null` removes a limit; an empty list of countries or addresses means "any". */
export function keyRequest(settings: KeySettings): Schemas['UpdateKeyRequest'] {
  const countries = settings.countries.map((country) => country.trim().toLowerCase());
  return {
    name: settings.name.trim(),
    scopes: settings.api ? ['proxy', 'api'] : ['proxy'],
    monthly_byte_cap:
      settings.monthlyGb === '' ? null : Math.round(Number(settings.monthlyGb) * GB),
    max_concurrency: settings.maxConcurrency === '' ? null : Number(settings.maxConcurrency),
    allowed_countries: countries.length ? countries : null,
    client_allowlist: settings.allowlist.length
      ? settings.allowlist.map((cidr) => cidr.trim())
      : null,
    passwordless_cidrs: settings.passwordless.map((cidr) => cidr.trim()),
    default_targeting: settings.defaultTargeting.trim(),
  };
}

/** Problems to show beside the fields before anything is sent. */
export function keySettingsProblems(
  settings: KeySettings,
): Partial<Record<keyof KeySettings, string>> {
  const problems: Partial<Record<keyof KeySettings, string>> = {};
  if (settings.name.length > 100) problems.name = 'At most 100 characters';
  const bad = settings.countries.find((country) => !/^[a-z]{2}$/i.test(country.trim()));
  if (bad !== undefined) problems.countries = `${bad} is not a two-letter country code`;
  if (settings.monthlyGb !== '' && Number(settings.monthlyGb) < 0) {
    problems.monthlyGb = 'Zero or more';
  }
  if (settings.maxConcurrency !== '' && Number(settings.maxConcurrency) < 1) {
    problems.maxConcurrency = 'At least 1';
  }
  return problems;
}

/** The lines shown beside a new secret: curl through the HTTP proxy, and code. */
export function connectionSnippets(
  created: Schemas['KeyCreated'],
  target = 'https://example.com',
  apiUrl = 'http://127.0.0.1:8080',
) {
  const gateway = new URL(created.http_proxy_url);
  return {
    curl: `curl -x ${created.http_proxy_url} ${target}`,
    sdk: [
      "import { IPCola } from '@ipcola/sdk';",
      '',
      'const ipc = new IPCola({',
      `  apiKey: '${created.id}.${created.secret}',`,
      `  apiUrl: '${apiUrl}',`,
      `  proxyUrl: '${gateway.protocol}//${gateway.host}',`,
      '});',
      `const res = await ipc.fetch('${target}', { country: 'us' });`,
      'console.log(res.status, await res.text());',
    ].join('\n'),
    node: [
      "import { fetch, ProxyAgent } from 'undici';",
      '',
      `const dispatcher = new ProxyAgent('${created.http_proxy_url}');`,
      `const res = await fetch('${target}', { dispatcher });`,
      'console.log(res.status, await res.text());',
    ].join('\n'),
    python: [
      'import requests',
      '',
      `proxy = '${created.http_proxy_url}'`,
      `print(requests.get('${target}', proxies={'http': proxy, 'https': proxy}).text)`,
    ].join('\n'),
  };
}
