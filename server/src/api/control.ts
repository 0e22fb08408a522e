/**
 * The control API under /v1: its options, and what its routers share (sessions, the
 * caller check, Idempotency-Key answers, the public proxy address). index.ts mounts the
 * routers, one per resource; request and answer types come from the OpenAPI document.
 */

import type { components } from '@ipcola/openapi';
import type { RequestHandler, Response } from 'express';
import session from 'express-session';
import type passport from 'passport';
import type { Accounts } from '../accounts/index.ts';
import type { AuthFailureLimit } from '../auth-failures/index.ts';
import type { PriceBook } from '../billing/index.ts';
import type { Leases } from '../leases/index.ts';
import type { CardPayments } from '../payments/index.ts';
import { createSealingBox } from '../secrets/index.ts';
import type { SignupLimit } from '../signup-limit/index.ts';
import type { Queryable } from '../store/index.ts';
import type { Webhooks } from '../webhooks/index.ts';
import { callerOf, createAuthenticator, requireCaller } from './auth.ts';
import type { ProxyEndpoint } from './connection.ts';
import { idempotency } from './idempotency.ts';
import type { NodeStatusView, UpstreamNodeRegistrar } from './nodes.ts';
import { DatabaseSessionStore } from './session-store.ts';
import { SESSION_COOKIE } from './sessions.ts';
import type { BodyValidator } from './validate.ts';

export type { UpstreamNodeRegistrar } from './nodes.ts';
/** Online exits of a place and type; exits of no known country are not listed. */
export type Region = Omit<components['schemas']['Region'], 'country'> & { country: string | null };

export interface ControlOptions {
  accounts: Accounts;
  /** Where sessions live unless sessionStore is given (the `sessions` table), and usage. */
  database: Queryable;
  /** Another express-session store (e.g. over Redis); default: the database. */
  sessionStore?: session.Store;
  /** Public proxy and hub addresses for the URLs and commands answers carry; a function when known late. */
  proxyEndpoint: ProxyEndpoint | (() => ProxyEndpoint);
  /** Online exits by country, city and type (the hub's live registry). */
  listRegions: () => Promise<Region[]>;
  /** Failed log-ins per client address; past the allowance the address is refused for a while. */
  loginFailures?: AuthFailureLimit;
  /** Sign-ups per client address; past the allowance sign-up answers rate_limited. */
  signups?: SignupLimit;
  /** Prices per exit type: GET /v1/billing shows them and what the balance buys. */
  prices: PriceBook;
  /** Card payments through Stripe; without them checkout and Stripe's webhook answer billing_disabled. */
  payments?: CardPayments;
  /** Client connections open now through this server's gateway, per key in use. */
  openConnections?: () => ReadonlyMap<string, number>;
  /** What this server sees of a node now: online, and the exit IPs it announces. */
  nodeStatus?: (nodeId: string) => NodeStatusView;
  /** A node was deleted: close its tunnel and take its exits out of the pool. */
  nodeDeleted?: (nodeId: string) => void;
  /** Sticky sessions made ahead of use; without it /v1/leases is not served. */
  leases?: Leases;
  /** Background failures (keeping an idempotent answer), for the log. */
  onError?: (error: unknown) => void;
  /** Stores upstream-proxy nodes and starts using them; without it `upstream` is refused. */
  upstreamNodes?: UpstreamNodeRegistrar;
  /** Customer webhook endpoints and their deliveries; without it /v1/webhooks is not served. */
  webhooks?: Pick<Webhooks, 'endpoints' | 'sendTest' | 'listDeliveries'>;
}

/** What the resource routers share; each takes the parts it needs. */
export interface ControlShared {
  /** Cache-Control, the session cookie and passport, in front of every route. */
  preamble: RequestHandler[];
  authenticator: passport.Authenticator;
  /** Refuses callers without a session or API key (see callerOf). */
  caller: RequestHandler;
  /** Replays the first answer to a repeated Idempotency-Key. */
  idempotent: RequestHandler;
  endpoint: () => ProxyEndpoint;
  accountOf: (res: Response) => string;
}

/** What the routers of signed-in resources (keys, nodes, leases, proxy lists) all take. */
export type ResourceRouterOptions = Pick<ControlShared, 'caller' | 'idempotent' | 'endpoint'> & {
  bodies: BodyValidator;
};

/** A session lasts a week from sign-in; signing out ends it at once. */
const SESSION_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

export function createControlShared(options: ControlOptions): ControlShared {
  const { accounts, proxyEndpoint } = options;
  const authenticator = createAuthenticator(accounts);
  const accountOf = (res: Response) => callerOf(res).accountId;
  // Answers carry secrets shown once (key secrets, node tokens, CSRF tokens): never cached.
  const noStore: RequestHandler = (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  };
  const sessions = session({
    name: SESSION_COOKIE,
    store: options.sessionStore ?? new DatabaseSessionStore(options.database),
    // Derived from the pepper: the same on every server sharing the database.
    secret: accounts.deriveSecret('session cookie').toString('base64url'),
    resave: false,
    saveUninitialized: false,
    unset: 'destroy',
    cookie: {
      httpOnly: true,
      sameSite: 'lax',
      // Secure when the request came over TLS: to this server, or to a proxy listed in
      // TRUST_PROXY that says so in X-Forwarded-Proto (express's req.secure).
      secure: 'auto',
      path: '/',
      maxAge: SESSION_MAX_AGE_MS,
    },
  });
  return {
    preamble: [noStore, sessions, authenticator.initialize(), authenticator.session()],
    authenticator,
    caller: requireCaller(accounts),
    // Answers kept for Idempotency-Key retries are sealed under a key of their own.
    idempotent: idempotency(
      options.database,
      createSealingBox(accounts.deriveSecret('idempotency answers')),
      accountOf,
      (error) => options.onError?.(error),
    ),
    endpoint: typeof proxyEndpoint === 'function' ? proxyEndpoint : () => proxyEndpoint,
    accountOf,
  };
}
