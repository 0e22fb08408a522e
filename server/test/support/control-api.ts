/** A control API over a fresh, migrated database of one engine, for supertest. */
import { readFile } from 'node:fs/promises';
import type { Express } from 'express';
import request from 'supertest';
import { type Accounts, createAccounts, loadOrCreatePepper } from '../../src/accounts/index.ts';
import { createApiApp, type ProxyEndpoint, type Region } from '../../src/api/index.ts';
import { createPriceBook } from '../../src/billing/index.ts';
import type { Logger } from '../../src/log/index.ts';
import { createSealingBox } from '../../src/secrets/index.ts';
import { createMemoryHotState, type Database, migrate } from '../../src/store/index.ts';
import { createWebhooks, type Webhooks, type WebhooksOptions } from '../../src/webhooks/index.ts';
import { type DatabaseEngine, quietLogger } from './engines.ts';

export const OPENAPI = await readFile(
  new URL('../../../openapi/openapi.yaml', import.meta.url),
  'utf8',
);

/** 3.50 eur: not the default, so a test can tell the configured credit is used. */
export const TRIAL = { currency: 'eur', micro: 3_500_000 };

export const ENDPOINT: ProxyEndpoint = {
  host: 'proxy.example.test',
  httpPort: 8000,
  socksPort: 1080,
  hubPort: 7000,
};

export interface ControlApi {
  app: Express;
  db: Database;
  accounts: Accounts;
  pepper: Buffer;
  /** What the fake hub answers GET /v1/regions with. */
  regions: Region[];
  /** Customer webhooks, delivering, when asked for. */
  webhooks: Webhooks | undefined;
  close(): Promise<void>;
}

/** How a test's webhooks differ from the defaults (which database and box they use is fixed). */
export type TestWebhooksOptions = Omit<WebhooksOptions, 'database' | 'box' | 'logger'>;

export async function openControlApi(
  engine: DatabaseEngine,
  options: {
    endpoint?: ProxyEndpoint | (() => ProxyEndpoint);
    logger?: Logger;
    /** Answers off the OpenAPI document become 500s. */
    strictAnswers?: boolean;
    /** Serves /v1/webhooks and delivers with these options. */
    webhooks?: TestWebhooksOptions;
  } = {},
): Promise<ControlApi> {
  const opened = await engine.open();
  const db = opened.value;
  await migrate(db);
  const pepper = await loadOrCreatePepper(db);
  const accounts = createAccounts(db, { pepper, trialCredit: TRIAL });
  const prices = await createPriceBook(db, { currency: TRIAL.currency });
  const hot = createMemoryHotState();
  const webhooks =
    options.webhooks &&
    createWebhooks({
      ...options.webhooks,
      database: db,
      box: createSealingBox(accounts.deriveSecret('webhook secrets')),
      logger: options.logger ?? quietLogger,
    });
  webhooks?.start();
  const api: ControlApi = {
    db,
    accounts,
    pepper,
    regions: [],
    webhooks,
    app: undefined as unknown as Express,
    async close() {
      prices.close();
      await webhooks?.close();
      await hot.close();
      await opened.dispose();
    },
  };
  api.app = createApiApp({
    logger: options.logger ?? quietLogger,
    dependencies: { database: db, hot_state: hot },
    openapiDocument: OPENAPI,
    strictAnswers: options.strictAnswers ?? false,
    control: {
      accounts,
      database: db,
      proxyEndpoint: options.endpoint ?? ENDPOINT,
      listRegions: async () => api.regions,
      prices,
      ...(webhooks ? { webhooks } : {}),
    },
  });
  return api;
}

let counter = 0;

/** A fresh email for each call, so tests in one database never collide. */
export function freshEmail(label = 'user'): string {
  counter += 1;
  return `${label}.${counter}.${Date.now().toString(36)}@example.com`;
}

export const PASSWORD = 'correct horse battery staple';

/** The value of the ipcola.sid cookie a response sets, if any. */
export function sessionCookie(res: request.Response): string | undefined {
  const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  const line = cookies.find((cookie) => cookie.startsWith('ipcola.sid='));
  return line?.split(';')[0]?.slice('ipcola.sid='.length);
}

/** A person signed up and signed in: a supertest agent holding the session cookie. */
export interface SignedIn {
  agent: ReturnType<typeof request.agent>;
  csrf: string;
  accountId: string;
  email: string;
}

/** Signs a fresh person up on `app` (201 expected), as the portal would. */
export async function signUp(app: Express, label = 'user'): Promise<SignedIn> {
  const agent = request.agent(app);
  const email = freshEmail(label);
  const signed = await agent
    .post('/v1/auth/signup')
    .send({ email, password: PASSWORD })
    .expect(201);
  return { agent, csrf: signed.body.csrf_token, accountId: signed.body.account.id, email };
}
