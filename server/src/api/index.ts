import { randomUUID, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { components } from '@ipcola/openapi';
import { plainAddress } from '@ipcola/shared/addresses';
import express, { type ErrorRequestHandler, type Express, type Request } from 'express';
import { pinoHttp } from 'pino-http';
import type { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { type ErrorCode, ipcolaError, isIPColaError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import { portalRouter } from '../portal/index.ts';
import { isStoreUnavailable } from '../store/index.ts';
import { createTlsServer, type TlsServing } from '../tls/index.ts';
import { autoTopUpRouter } from './auto-topup.ts';
import { billingRouter } from './billing.ts';
import { type ControlOptions, createControlShared } from './control.ts';
import { documentationRouter } from './docs.ts';
import { checkReadiness, type Dependency } from './health.ts';
import { keysRouter } from './keys.ts';
import { leasesRouter } from './leases.ts';
import { nodeEarningsRouter } from './node-earnings.ts';
import { nodesRouter } from './nodes.ts';
import { createAnswerCheck, createParameterCheck } from './parameters.ts';
import { payoutsRouter } from './payouts.ts';
import { proxyListsRouter } from './proxy-lists.ts';
import { regionsRouter } from './regions.ts';
import { sessionsRouter } from './sessions.ts';
import { stripeWebhookRouter } from './stripe-webhook.ts';
import { usageRouter } from './usage.ts';
import { type BodyValidator, createBodyValidator } from './validate.ts';
import { webhooksRouter } from './webhooks.ts';

export type { ProxyEndpoint } from './connection.ts';
export type { ControlOptions, Region } from './control.ts';
export type { Dependency } from './health.ts';
export { DatabaseSessionStore, type DatabaseSessionStoreOptions } from './session-store.ts';

type ErrorBody = components['schemas']['Error'];

export interface ApiOptions {
  logger: Logger;
  dependencies: { database: Dependency; hot_state: Dependency };
  /** Whether the instance is shutting down: /readyz answers 503 `draining` meanwhile. */
  draining?: () => boolean;
  /** The OpenAPI document, served as it is; request bodies are validated against its schemas. */
  openapiDocument: string;
  /** The control API under `/v1` (accounts, keys, nodes, regions); without it, not served. */
  control?: ControlOptions;
  /** Answers off the document become 500s (tests); otherwise they are logged only. */
  strictAnswers?: boolean;
  /** Prometheus metrics at /metrics; without it, not served. */
  metrics?: { registry: Registry; token: string | undefined };
  /**
   * CIDRs of TLS-terminating proxies in front of the API: only from them are
   * X-Forwarded-For (the client address limits count by) and X-Forwarded-Proto (the
   * session cookie's Secure flag) believed. None: nobody's.
   */
  trustProxy?: readonly string[];
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The REST API: health, readiness, the OpenAPI document and, given `control`, the
 * control API under `/v1`; JSON errors, request-scoped logs.
 */
export function createApiApp(options: ApiOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  // proxy-addr walks X-Forwarded-For from the right while the hop is one of these, so a
  // client cannot put an address of its choosing in front of the proxy's.
  app.set('trust proxy', options.trustProxy?.length ? [...options.trustProxy] : false);

  app.use(
    pinoHttp({
      logger: options.logger.child({ role: 'api' }),
      genReqId(req: IncomingMessage, res: ServerResponse) {
        const offered = req.headers['x-request-id'];
        const id = typeof offered === 'string' && REQUEST_ID.test(offered) ? offered : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      serializers: {
        // The CSRF token is a session secret: like cookies, it stays out of the log.
        req(req: { headers?: Record<string, unknown> }) {
          if (req.headers?.['x-csrf-token'] !== undefined) {
            req.headers = { ...req.headers, 'x-csrf-token': '[redacted]' };
          }
          return req;
        },
      },
      customLogLevel(req, res, error) {
        if (error || res.statusCode >= 500) return 'error';
        if (req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics') {
          return 'debug';
        }
        return 'info';
      },
    }),
  );
  app.use((_req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' } satisfies components['schemas']['Health']);
  });

  app.get('/readyz', async (_req, res) => {
    const readiness = await checkReadiness(options.dependencies);
    if (options.draining?.()) readiness.status = 'draining';
    res.status(readiness.status === 'ready' ? 200 : 503).json(readiness);
  });

  app.use(documentationRouter(options.openapiDocument));

  const { metrics } = options;
  if (metrics) {
    app.get('/metrics', async (req, res) => {
      if (!mayReadMetrics(req, metrics.token)) {
        throw ipcolaError(
          'forbidden',
          metrics.token
            ? 'Send METRICS_TOKEN as a bearer token'
            : 'Only loopback clients may read metrics unless METRICS_TOKEN is set',
        );
      }
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  if (options.control) {
    const document = parseYaml(options.openapiDocument);
    const bodies = createBodyValidator(document);
    app.use('/v1', createParameterCheck(document, bodies));
    const answersLog = options.logger.child({ role: 'api' });
    app.use(
      '/v1',
      createAnswerCheck(document, bodies, {
        strict: options.strictAnswers ?? false,
        onMismatch: (where, failure) =>
          answersLog.error({ where, failure }, 'an answer does not match the OpenAPI document'),
      }),
    );
    // Before the routers' sessions and body parsing: Stripe's signature is over the raw body.
    app.use('/v1', stripeWebhookRouter(options.control.payments));
    app.use('/v1', controlRouters(options.control, bodies));
  }

  app.use(portalRouter());
  app.use((_req, _res, next) => next(ipcolaError('not_found')));
  app.use(apiErrorHandler);
  return app;
}

const OPENAPI_DOCUMENT = new URL('../../../openapi/openapi.yaml', import.meta.url);

/**
 * The API's HTTP server over the OpenAPI document this server was built with. Slow or
 * idle clients cannot hold its connections (slow request headers get 408).
 */
export async function createApiServer({
  tls,
  ...options
}: Omit<ApiOptions, 'openapiDocument'> & { tls?: TlsServing | undefined }): Promise<Server> {
  const app = createApiApp({
    ...options,
    openapiDocument: await readFile(OPENAPI_DOCUMENT, 'utf8'),
  });
  const serverOptions = { headersTimeout: 10_000, requestTimeout: 30_000 };
  const server = tls ? createTlsServer(tls, serverOptions, app) : createServer(serverOptions, app);
  server.keepAliveTimeout = 5_000;
  return server;
}

/** The control API's routers, one per resource, behind sessions and no-store. */
function controlRouters(control: ControlOptions, bodies: BodyValidator): express.Router[] {
  const shared = createControlShared(control);
  const { caller, idempotent, endpoint } = shared;
  const { accounts, leases, webhooks } = control;
  const guarded = { bodies, caller, idempotent, endpoint };
  return [
    express.Router().use(shared.preamble),
    sessionsRouter({
      accounts,
      database: control.database,
      bodies,
      authenticator: shared.authenticator,
      caller,
      loginFailures: control.loginFailures,
      signups: control.signups,
    }),
    keysRouter({ accounts, ...guarded }),
    nodesRouter({
      accounts,
      ...guarded,
      nodeStatus: control.nodeStatus,
      nodeDeleted: control.nodeDeleted,
      upstreamNodes: control.upstreamNodes,
    }),
    nodeEarningsRouter({
      accounts,
      database: control.database,
      caller,
      accountOf: shared.accountOf,
    }),
    usageRouter({
      database: control.database,
      caller,
      accountOf: shared.accountOf,
      openConnections: control.openConnections ?? (() => new Map()),
    }),
    billingRouter({
      accounts,
      database: control.database,
      prices: control.prices,
      payments: control.payments,
      bodies,
      caller,
      idempotent,
      accountOf: shared.accountOf,
    }),
    payoutsRouter({
      payments: control.payments,
      bodies,
      caller,
      idempotent,
      accountOf: shared.accountOf,
    }),
    autoTopUpRouter({
      database: control.database,
      payments: control.payments,
      bodies,
      caller,
      accountOf: shared.accountOf,
    }),
    ...(leases ? [leasesRouter({ leases, ...guarded })] : []),
    proxyListsRouter({ accounts, ...guarded }),
    regionsRouter({ listRegions: control.listRegions, caller }),
    ...(webhooks ? [webhooksRouter({ webhooks, bodies, caller, idempotent })] : []),
  ];
}

/** With a token, whoever sends it; without one, loopback clients only. */
function mayReadMetrics(req: Request, token: string | undefined): boolean {
  if (token === undefined) {
    return plainAddress(req.socket.remoteAddress ?? '')?.range() === 'loopback';
  }
  const offered = Buffer.from(req.headers.authorization ?? '');
  const expected = Buffer.from(`Bearer ${token}`);
  return offered.length === expected.length && timingSafeEqual(offered, expected);
}

/** Seconds a client is told to wait when a store is down. */
const STORE_RETRY_AFTER_SECONDS = 5;

/** Maps any error to the JSON error shape; internals and stacks stay in the log. */
export const apiErrorHandler: ErrorRequestHandler = (error, req, res, _next) => {
  let code: ErrorCode;
  let message: string;
  if (isIPColaError(error)) {
    code = error.code;
    message = error.message;
    if (error.retryAfterSeconds !== undefined && !res.headersSent) {
      res.setHeader('Retry-After', String(error.retryAfterSeconds));
    }
  } else if (isBodyParserError(error)) {
    [code, message] = bodyParserRefusal(error);
  } else if (isStoreUnavailable(error)) {
    // The one place a store outage meets the API: 503 with a code and a time to come back,
    // never a 500 (PostgreSQL restarts in seconds; Redis reconnects within 2 s).
    code = 'not_ready';
    message = `${error.engine === 'postgres' ? 'The database' : 'Hot state'} is unavailable; retry shortly`;
    if (!res.headersSent) res.setHeader('Retry-After', String(STORE_RETRY_AFTER_SECONDS));
    req.log?.warn({ err: error }, 'answered 503: a store is unavailable');
  } else {
    code = 'internal_error';
    message = 'Internal error';
    req.log?.error({ err: error }, 'unhandled error');
  }
  const status = ipcolaError(code).status;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(status).json({ error: { code, message } } satisfies ErrorBody);
};

interface BodyParserError {
  type: string;
  status: number;
}

function isBodyParserError(error: unknown): error is BodyParserError {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as BodyParserError).type === 'string' &&
    typeof (error as BodyParserError).status === 'number'
  );
}

// body-parser tags its errors with a stable `type`; that, not the message, decides the code.
function bodyParserRefusal(error: BodyParserError): [ErrorCode, string] {
  switch (error.type) {
    case 'entity.too.large':
      return ['payload_too_large', 'The request body is too large'];
    case 'entity.parse.failed':
      return ['invalid_request', 'The request body is not valid JSON'];
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return ['unsupported_media_type', 'The request body encoding is not supported'];
    default:
      return ['invalid_request', 'The request body could not be read'];
  }
}
