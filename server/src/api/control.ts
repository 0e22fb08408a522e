/**
 * The control API under /v1: sign-up, sign-in, sign-out, who am I, API keys, exit
 * nodes, regions, usage. Request and answer types come from the OpenAPI document.
 */
import { randomBytes } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import session from 'express-session';
import type { Account, Accounts, IssuedKey, KeyChanges, KeyView, User } from '../accounts/index.ts';
import type { AuthFailureLimit } from '../auth-failures/index.ts';
import { ipcolaError, isIPColaError } from '../errors/index.ts';
import { formatProxyUsername, parseUsernameParameters } from '../gateway/credentials.ts';
import type { Lease, Leases, LeaseTargeting } from '../leases/index.ts';
import type { SignupLimit } from '../signup-limit/index.ts';
import type { Queryable } from '../store/index.ts';
import {
  createCredentialBox,
  describeProxy,
  type RegisteredUpstreamNode,
  type UpstreamRegistration,
} from '../upstream/index.ts';
import { callerOf, createAuthenticator, requireCaller, startSession } from './auth.ts';
import {
  agentCommand,
  keyConnection,
  leaseConnection,
  type ProxyEndpoint,
  proxyLine,
} from './connection.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { idempotency, idempotencyKeyOf, signupRetries } from './idempotency.ts';
import type { components } from './openapi.d.ts';
import { regionList } from './regions.ts';
import { DatabaseSessionStore } from './session-store.ts';
import { usageCsv, usageReport } from './usage.ts';
import type { BodyValidator } from './validate.ts';

type Schemas = components['schemas'];
export type Region = Schemas['Region'];

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
  /** What node operators earn per GB carried: GET /v1/nodes shows each node's earnings. */
  nodeEarnings: NodeEarningsRate;
  /** What this server sees of a node now: online, and the exit IPs it announces. */
  nodeStatus?: (nodeId: string) => { online: boolean; exitIps: string[] };
  /** A node was deleted: close its tunnel and take its exits out of the pool. */
  nodeDeleted?: (nodeId: string) => void;
  /** Sticky sessions made ahead of use; without it /v1/leases is not served. */
  leases?: Leases;
  /** Background failures (keeping an idempotent answer), for the log. */
  onError?: (error: unknown) => void;
  /** Stores upstream-proxy nodes and starts using them; without it `upstream` is refused. */
  upstreamNodes?: UpstreamNodeRegistrar;
}

export interface NodeEarningsRate {
  /** Minor units of the currency (cents for usd) per 10^9 bytes. */
  minorPerGb: number;
  /** ISO 4217, lowercase. */
  currency: string;
}

export interface UpstreamNodeRegistrar {
  /** Checks and stores the node, and makes its exits leasable; throws invalid_request naming the field. */
  register(accountId: string, registration: UpstreamRegistration): Promise<RegisteredUpstreamNode>;
}

export const SESSION_COOKIE = 'ipcola.sid';
/** A session lasts a week from sign-in; signing out ends it at once. */
const SESSION_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
const BODY_LIMIT = '64kb';
/** The page size of lists when the request names none (the OpenAPI document's default). */
const LIST_LIMIT = { default: 100 };

export function createControlRouter(options: ControlOptions, bodies: BodyValidator): Router {
  const { accounts } = options;
  const endpoint =
    typeof options.proxyEndpoint === 'function'
      ? options.proxyEndpoint
      : () => options.proxyEndpoint as ProxyEndpoint;
  const authenticator = createAuthenticator(accounts);
  const caller = requireCaller(accounts);
  const router = express.Router();
  // Answers kept for Idempotency-Key retries are sealed under a key of their own.
  const idempotent = idempotency(
    options.database,
    createCredentialBox(accounts.deriveSecret('idempotency answers')),
    (res) => callerOf(res).accountId,
    (error) => options.onError?.(error),
  );
  const signups = signupRetries(options.database);
  // Password checks (log-in, signup retries) are limited per client address.
  const refuseIfBlocked = (address: string) => {
    const blocked = options.loginFailures?.blockedFor(address) ?? 0;
    if (blocked > 0) throw tooManyLogins(blocked);
  };
  /** Counts a wrong password; resolves with how long the address is now blocked (0: not). */
  const failedSignIn = async (address: string) =>
    (await options.loginFailures?.recordFailure(address)) ?? 0;

  // Answers carry secrets shown once (key secrets, node tokens, CSRF tokens): never cached.
  router.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  router.use(
    session({
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
    }),
  );
  router.use(authenticator.initialize());
  router.use(authenticator.session());

  router
    .route('/auth/signup')
    .post(jsonBody, async (req, res) => {
      const body = bodies.check('SignupRequest', requiredBody(req));
      const retryKey = idempotencyKeyOf(req);
      const waitMs = (await options.signups?.take(clientAddress(req))) ?? 0;
      if (waitMs > 0) {
        const seconds = Math.ceil(waitMs / 1000);
        throw ipcolaError(
          'rate_limited',
          `Too many sign-ups from this address: try again in ${seconds} s`,
          { retryAfterSeconds: seconds },
        );
      }
      let created: Awaited<ReturnType<Accounts['signup']>>;
      try {
        created = await accounts.signup(
          body.email,
          body.password,
          retryKey === undefined
            ? undefined
            : (tx, accountId) => signups.remember(tx, accountId, retryKey, body.email),
        );
      } catch (error) {
        if (retryKey === undefined || !isIPColaError(error) || error.code !== 'email_taken') {
          throw error;
        }
        // Checking the password costs what a log-in costs, so it is limited like one.
        const address = clientAddress(req);
        refuseIfBlocked(address);
        const user = await accounts.login(body.email, body.password);
        if (!user) {
          const blockedNow = await failedSignIn(address);
          if (blockedNow > 0) throw tooManyLogins(blockedNow);
        }
        // Wrong password, or no signup with this key: the email is simply taken.
        if (!user || !(await signups.isRetry(user.accountId, retryKey, body.email))) throw error;
        res.setHeader('Idempotent-Replayed', 'true');
        res.status(201).json(await signIn(req, user));
        return;
      }
      const csrfToken = await startSession(req, created.user);
      res.status(201).json({
        account: accountView(created.account),
        user: userView(created.user),
        csrf_token: csrfToken,
      } satisfies Schemas['SessionStarted']);
    })
    .all(onlyMethods('POST'));

  router
    .route('/auth/login')
    .post(jsonBody, (req, res, next) => {
      bodies.check('LoginRequest', requiredBody(req));
      // Retrying a log-in is safe as it is (each answer is a new session): the key is only checked.
      idempotencyKeyOf(req);
      const address = clientAddress(req);
      refuseIfBlocked(address);
      const verdict = (error: unknown, user: User | false) => {
        if (error) return next(error);
        if (!user) {
          const refuse = (blockedMs: number) =>
            next(
              blockedMs > 0
                ? tooManyLogins(blockedMs)
                : ipcolaError('unauthorized', 'Wrong email or password'),
            );
          failedSignIn(address).then(refuse, next);
          return;
        }
        signIn(req, user).then((answer) => res.json(answer), next);
      };
      authenticator.authenticate('local', { session: false }, verdict)(req, res, next);
    })
    .all(onlyMethods('POST'));

  const signIn = async (req: Request, user: User): Promise<Schemas['SessionStarted']> => {
    const account = await accounts.getAccount(user.accountId);
    if (!account) throw ipcolaError('unauthorized', 'Wrong email or password');
    const csrfToken = await startSession(req, user);
    return { account: accountView(account), user: userView(user), csrf_token: csrfToken };
  };

  router
    .route('/auth/logout')
    .post(caller, (req, res, next) => {
      idempotencyKeyOf(req); // signing out twice is signing out: the key is only checked
      if (callerOf(res).kind === 'key') {
        res.status(204).end();
        return;
      }
      req.session.destroy((error) => {
        if (error) return next(error);
        res.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax' });
        res.status(204).end();
      });
    })
    .all(onlyMethods('POST'));

  router
    .route('/me')
    .get(caller, async (req, res) => {
      const who = callerOf(res);
      const account = await accounts.getAccount(who.accountId);
      if (!account) throw ipcolaError('unauthorized', 'The account no longer exists');
      const me: Schemas['Me'] = { account: accountView(account), user: null };
      if (who.kind === 'session') {
        me.user = userView(who.user);
        if (req.session.csrfToken) me.csrf_token = req.session.csrfToken;
      }
      res.json(me);
    })
    .all(onlyMethods('GET', 'HEAD'));

  router
    .route('/keys')
    .get(caller, async (req, res) => {
      const page = await listPage(req, (listing) =>
        accounts.listKeys(callerOf(res).accountId, listing),
      );
      res.json({
        items: page.items.map(keyView),
        next_cursor: page.nextCursor,
      } satisfies Schemas['KeyList']);
    })
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateKeyRequest', optionalBody(req));
      const { name, scopes, ...settings } = keyChanges(body);
      const key = await accounts.issueKey(callerOf(res).accountId, {
        ...settings,
        name: name ?? '',
        ...(scopes ? { scopes } : {}),
      });
      res.status(201).json(keyCreatedView(key, endpoint()));
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/keys/:id')
    .get(caller, async (req, res) => {
      const key = await accounts.getKey(callerOf(res).accountId, idParam(req));
      if (!key) throw ipcolaError('not_found', 'No such key');
      res.json(keyView(key));
    })
    .patch(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('UpdateKeyRequest', requiredBody(req));
      const changes = keyChanges(body);
      const key = await accounts.updateKey(callerOf(res).accountId, idParam(req), changes);
      if (!key) throw ipcolaError('not_found', 'No such key');
      res.json(keyView(key));
    })
    .delete(caller, idempotent, async (req, res) => {
      if (!(await accounts.revokeKey(callerOf(res).accountId, idParam(req)))) {
        throw ipcolaError('not_found', 'No such key');
      }
      res.status(204).end();
    })
    .all(onlyMethods('GET', 'HEAD', 'PATCH', 'DELETE'));

  router
    .route('/keys/:id/rotate')
    .post(caller, idempotent, async (req, res) => {
      const key = await accounts.rotateKey(callerOf(res).accountId, idParam(req));
      if (!key) throw ipcolaError('not_found', 'No such key');
      res.json(keyCreatedView(key, endpoint()));
    })
    .all(onlyMethods('POST'));

  router
    .route('/nodes')
    .get(caller, async (req, res) => {
      const page = await listPage(req, (listing) =>
        accounts.listNodes(callerOf(res).accountId, listing),
      );
      res.json({
        items: page.items.map((node) => {
          const status = options.nodeStatus?.(node.id) ?? { online: false, exitIps: [] };
          return {
            id: node.id,
            name: node.name,
            type: node.type,
            kind: node.kind,
            online: status.online,
            exit_ips: status.exitIps,
            bytes_carried: node.bytesCarried,
            earnings: earningsOf(node.bytesCarried, options.nodeEarnings),
            created_at: node.createdAt.toISOString(),
          };
        }),
        next_cursor: page.nextCursor,
      } satisfies Schemas['NodeList']);
    })
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateNodeRequest', optionalBody(req));
      if (body.upstream) {
        if (!options.upstreamNodes) {
          throw ipcolaError('invalid_request', 'upstream-proxy nodes are not enabled here');
        }
        const node = await options.upstreamNodes.register(callerOf(res).accountId, {
          name: body.name ?? '',
          type: body.type ?? 'datacenter',
          upstream: body.upstream,
        });
        res.status(201).json({
          id: node.id,
          name: node.name,
          type: node.type,
          created_at: node.createdAt.toISOString(),
          upstream: upstreamView(node),
        } satisfies Schemas['UpstreamNodeCreated']);
        return;
      }
      const node = await accounts.registerNode(callerOf(res).accountId, {
        name: body.name ?? '',
        type: body.type ?? 'residential',
      });
      res.status(201).json({
        id: node.id,
        name: node.name,
        type: node.type,
        created_at: node.createdAt.toISOString(),
        token: node.token,
        agent_command: agentCommand(endpoint(), node.token, node.type),
      } satisfies Schemas['AgentNodeCreated']);
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  const accountOf = (res: Response) => callerOf(res).accountId;
  router
    .route('/usage')
    .get(caller, usageReport(options.database, accountOf))
    .all(onlyMethods('GET', 'HEAD'));
  router
    .route('/usage/export.csv')
    .get(caller, usageCsv(options.database, accountOf))
    .all(onlyMethods('GET', 'HEAD'));

  router
    .route('/nodes/:id')
    .delete(caller, idempotent, async (req, res) => {
      const nodeId = idParam(req);
      if (!(await accounts.deleteNode(callerOf(res).accountId, nodeId))) {
        throw ipcolaError('not_found', 'No such node');
      }
      options.nodeDeleted?.(nodeId);
      res.status(204).end();
    })
    .all(onlyMethods('DELETE'));

  const { leases } = options;
  if (leases) {
    const leaseView = (lease: Lease): Schemas['Lease'] => ({
      id: lease.id,
      key_id: lease.keyId,
      ...leaseConnection(endpoint(), lease.keyId, lease.targeting, {
        id: lease.id,
        ttlMs: lease.ttlSeconds * 1000,
      }),
      ttl_seconds: lease.ttlSeconds,
      active: lease.active,
      exit: lease.exit && {
        ip: lease.exit.ip,
        country: lease.exit.country ?? null,
        city: lease.exit.city ?? null,
        type: lease.exit.type as Schemas['ExitType'],
      },
      expires_at: lease.expiresAt?.toISOString() ?? null,
      created_at: lease.createdAt.toISOString(),
    });
    router
      .route('/leases')
      .get(caller, async (req, res) => {
        const page = await listPage(req, (listing) =>
          leases.list(callerOf(res).accountId, listing),
        );
        res.json({
          items: page.items.map(leaseView),
          next_cursor: page.nextCursor,
        } satisfies Schemas['LeaseList']);
      })
      .post(caller, jsonBody, idempotent, async (req, res) => {
        const body = bodies.check('CreateLeaseRequest', optionalBody(req));
        const who = callerOf(res);
        const keyId = body.key_id ?? (who.kind === 'key' ? who.keyId : undefined);
        if (keyId === undefined) {
          throw ipcolaError('invalid_request', 'key_id is required when signed in as a user');
        }
        const targeting = targetingOf(body);
        const lease = await leases.create(who.accountId, keyId, targeting, body.ttl_seconds ?? 600);
        if (!lease) throw ipcolaError('not_found', 'No such key');
        res.status(201).json(leaseView(lease));
      })
      .all(onlyMethods('GET', 'HEAD', 'POST'));
    router
      .route('/leases/:id')
      .get(caller, async (req, res) => {
        const lease = await leases.get(callerOf(res).accountId, idParam(req));
        if (!lease) throw ipcolaError('not_found', 'No such lease');
        res.json(leaseView(lease));
      })
      .delete(caller, idempotent, async (req, res) => {
        if (!(await leases.release(callerOf(res).accountId, idParam(req)))) {
          throw ipcolaError('not_found', 'No such lease');
        }
        res.status(204).end();
      })
      .all(onlyMethods('GET', 'HEAD', 'DELETE'));
    router
      .route('/leases/:id/renew')
      .post(caller, jsonBody, idempotent, async (req, res) => {
        const body = bodies.check('RenewLeaseRequest', optionalBody(req));
        const lease = await leases.renew(callerOf(res).accountId, idParam(req), body.ttl_seconds);
        if (!lease) throw ipcolaError('not_found', 'No such lease, or it has lapsed');
        res.json(leaseView(lease));
      })
      .all(onlyMethods('POST'));
  }

  router
    .route('/proxy-lists')
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateProxyListRequest', optionalBody(req));
      const who = callerOf(res);
      const keyId = body.key_id ?? (who.kind === 'key' ? who.keyId : undefined);
      if (keyId === undefined) {
        throw ipcolaError('invalid_request', 'key_id is required when signed in as a user');
      }
      if (!(await accounts.getKey(who.accountId, keyId))) {
        throw ipcolaError('not_found', 'No such key');
      }
      let password: string | undefined;
      if (body.secret !== undefined) {
        if (!(await accounts.verifyKey(keyId, body.secret))) {
          throw ipcolaError('invalid_request', 'secret is not the secret of this key');
        }
        password = body.secret;
      } else if (who.kind === 'key' && who.keyId === keyId) {
        password = who.secret;
      }
      const targeting = targetingOf(body);
      const sticky = body.sticky ?? true;
      const format = body.format ?? 'hostport';
      const ttlMs = (body.ttl_seconds ?? 600) * 1000;
      const proxies = Array.from({ length: body.count ?? 10 }, () =>
        proxyLine(
          endpoint(),
          format,
          formatProxyUsername(
            keyId,
            targeting,
            sticky ? { id: randomBytes(8).toString('hex'), ttlMs } : null,
          ),
          password ?? 'SECRET',
        ),
      );
      res.json({
        key_id: keyId,
        format,
        sticky,
        password_included: password !== undefined,
        proxies,
      } satisfies Schemas['ProxyList']);
    })
    .all(onlyMethods('POST'));

  router
    .route('/regions')
    .get(caller, regionList(options.listRegions))
    .all(onlyMethods('GET', 'HEAD'));

  return router;
}

const parseJson = express.json({ limit: BODY_LIMIT, type: 'application/json', strict: true });

/** JSON bodies only (a cross-site form cannot send one), parsed up to 64 KiB. */
const jsonBody: RequestHandler = (req, res, next) => {
  const length = req.headers['content-length'];
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (hasBody && !req.is('application/json')) {
    throw ipcolaError('unsupported_media_type', 'The request body must be application/json');
  }
  parseJson(req, res, next);
};

function requiredBody(req: Request): unknown {
  if (req.body === undefined) {
    throw ipcolaError('invalid_request', 'The request body is required: a JSON object');
  }
  return req.body;
}

function optionalBody(req: Request): unknown {
  return req.body === undefined ? {} : req.body;
}

function onlyMethods(...methods: string[]): RequestHandler {
  return (_req, res) => {
    res.setHeader('Allow', methods.join(', '));
    throw ipcolaError('method_not_allowed', `Only ${methods.join(', ')} is allowed here`);
  };
}

/**
 * Bytes carried at the operator rate, rounded down to a whole minor unit. BigInt: bytes
 * times rate can pass 2^53 long before either does.
 */
function earningsOf(bytes: number, rate: NodeEarningsRate): Schemas['NodeEarnings'] {
  return {
    currency: rate.currency,
    amount_minor: Number((BigInt(bytes) * BigInt(rate.minorPerGb)) / 1_000_000_000n),
    rate_minor_per_gb: rate.minorPerGb,
  };
}

function accountView(account: Account): Schemas['Account'] {
  return {
    id: account.id,
    balance_bytes: account.balanceBytes,
    created_at: account.createdAt.toISOString(),
  };
}

/** The proxy without its password: never shown again once registered. */
function upstreamView(node: RegisteredUpstreamNode): Schemas['UpstreamProxy'] {
  const { country, region, city, asn } = node.location;
  return {
    url: describeProxy(node.proxy),
    exit_ips: [...node.exitIps],
    country,
    ...(region !== undefined ? { region } : {}),
    ...(city !== undefined ? { city } : {}),
    ...(asn !== undefined ? { asn } : {}),
  };
}

/** A new or rotated key with its secret and ready proxy URLs: the one time they are shown. */
function keyCreatedView(key: IssuedKey, proxy: ProxyEndpoint): Schemas['KeyCreated'] {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    created_at: key.createdAt.toISOString(),
    secret: key.secret,
    ...keyConnection(proxy, key.id, key.secret),
  };
}

/** The settings a create or update request names (already checked by the schema). */
function keyChanges(body: Schemas['UpdateKeyRequest']): KeyChanges {
  const changes: KeyChanges = {};
  if (body.name !== undefined) changes.name = body.name;
  if (body.disabled !== undefined) changes.disabled = body.disabled;
  if (body.monthly_byte_cap !== undefined) changes.monthlyByteCap = body.monthly_byte_cap;
  if (body.max_concurrency !== undefined) changes.maxConcurrency = body.max_concurrency;
  if (body.scopes !== undefined) changes.scopes = body.scopes;
  if (body.allowed_countries !== undefined) changes.allowedCountries = body.allowed_countries;
  if (body.client_allowlist !== undefined) changes.clientAllowlist = body.client_allowlist;
  if (body.passwordless_cidrs !== undefined) changes.passwordlessCidrs = body.passwordless_cidrs;
  if (body.default_targeting !== undefined) {
    changes.defaultTargeting = checkedDefaultTargeting(body.default_targeting);
  }
  return changes;
}

/** Default targeting is read by the username parser at every password-less connection: it must parse. */
function checkedDefaultTargeting(text: string): string {
  try {
    parseUsernameParameters(text);
  } catch (error) {
    if (!isIPColaError(error)) throw error;
    throw ipcolaError('invalid_request', `default_targeting: ${error.message}`);
  }
  return text;
}

function keyView(key: KeyView): Schemas['Key'] {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    disabled: key.disabled,
    monthly_byte_cap: key.monthlyByteCap,
    max_concurrency: key.maxConcurrency,
    allowed_countries: key.allowedCountries,
    client_allowlist: key.clientAllowlist,
    passwordless_cidrs: key.passwordlessCidrs,
    default_targeting: key.defaultTargeting,
    created_at: key.createdAt.toISOString(),
    updated_at: key.updatedAt.toISOString(),
  };
}

/** The targeting fields of a lease or proxy-list request (already checked by the schema). */
function targetingOf(body: Schemas['CreateLeaseRequest']): LeaseTargeting {
  const targeting: LeaseTargeting = {};
  if (body.country !== undefined) targeting.country = body.country;
  if (body.region !== undefined) targeting.region = body.region;
  if (body.city !== undefined) targeting.city = body.city;
  if (body.asn !== undefined) targeting.asn = body.asn;
  if (body.type !== undefined) targeting.type = body.type;
  return targeting;
}

function idParam(req: Request): string {
  const id = req.params.id;
  // Ids are short lowercase text; anything else names nothing (and never reaches SQL as such).
  return typeof id === 'string' && /^[a-z0-9]{1,64}$/.test(id) ? id : '-';
}

type Listing = { after?: { createdAt: Date; id: string }; limit: number };

/**
 * One page of a list ordered by creation time and id: reads `limit` and `cursor`, asks
 * for one item more than the page to know whether another page follows, and hands out
 * the cursor after the last item.
 */
async function listPage<T extends { createdAt: Date; id: string }>(
  req: Request,
  load: (listing: Listing) => Promise<T[]>,
): Promise<{ items: T[]; nextCursor: string | null }> {
  // limit and cursor were checked against the document (parameters.ts).
  const { limit, cursor } = req.query;
  const count = typeof limit === 'string' ? Number(limit) : LIST_LIMIT.default;
  const position = cursor === undefined ? undefined : decodeCursor(cursor as string);
  const rows = await load({
    ...(position ? { after: { createdAt: position.at, id: position.id } } : {}),
    limit: count + 1,
  });
  const items = rows.slice(0, count);
  const last = items.at(-1);
  return {
    items,
    nextCursor:
      rows.length > count && last ? encodeCursor({ at: last.createdAt, id: last.id }) : null,
  };
}

/** The client's address: the peer's, or what a proxy listed in TRUST_PROXY forwarded. */
function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

function tooManyLogins(blockedMs: number) {
  const seconds = Math.ceil(blockedMs / 1000);
  return ipcolaError(
    'rate_limited',
    `Too many failed log-ins from this address: try again in ${seconds} s`,
    { retryAfterSeconds: seconds },
  );
}

function userView(user: User): Schemas['User'] {
  return { id: user.id, email: user.email };
}
