/**
 * The composition root: the one place that reads the configuration, opens the stores
 * and wires the roles together. Everything else receives what it needs.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { createExitPolicy } from '@ipcola/shared/exit-policy';
import { type Accounts, createAccounts, loadOrCreatePepper } from './accounts/index.ts';
import { createApiApp } from './api/index.ts';
import { createAuthFailureLimit } from './auth-failures/index.ts';
import { type Config, ConfigError, loadConfig } from './config/index.ts';
import { startDemo } from './demo.ts';
import { createGateway, type Exit } from './gateway/index.ts';
import { createHub, createHubServer } from './hub/index.ts';
import { createLeases, type LeasedExit } from './leases/index.ts';
import { closeServer, listen } from './listeners/index.ts';
import { createLogger, type Logger } from './log/index.ts';
import { createUsageMeter, startUsageFlusher, type UsageMeter } from './metering/index.ts';
import { createMetrics } from './metrics/index.ts';
import { createSealingBox } from './secrets/index.ts';
import { createSignupLimit } from './signup-limit/index.ts';
import { MigrationError, migrate, openDatabase, openHotState } from './store/index.ts';
import {
  createUpstreamDialer,
  createUpstreamExits,
  createUpstreamRegistry,
  loadCredentialBox,
  type UpstreamNode,
} from './upstream/index.ts';
import { createWebhooks } from './webhooks/index.ts';

const OPENAPI_DOCUMENT = new URL('../../openapi/openapi.yaml', import.meta.url);
/** How long an address that used up its failed sign-ins is refused. */
const AUTH_FAILURE_BLOCK_SECONDS = 300;

interface Ports {
  api: number;
  proxy: number;
  socks: number;
  hub: number;
}

interface RunningServer {
  readonly ports: Ports;
  readonly accounts: Accounts;
  whenNodesUp(nodeIds: string[], timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

type Cleanup = () => Promise<void>;

async function start(config: Config, logger: Logger): Promise<RunningServer> {
  const cleanups: Cleanup[] = [];
  const undo = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((error) => logger.error({ err: error }, 'clean-up failed'));
    }
  };

  try {
    const { database, close: closeDatabase } = await openDatabase(config, logger);
    cleanups.push(closeDatabase);
    const applied = await migrate(database);
    logger.info(
      { engine: database.engine, applied },
      `database ready, ${applied.length} migration(s) applied`,
    );

    const hotState = await openHotState(config, logger);
    cleanups.push(() => hotState.close());

    const accounts = createAccounts(database, {
      pepper: await loadOrCreatePepper(database),
      trialCreditBytes: config.trialCreditBytes,
    });

    // Customer webhooks: billing emits, the API manages endpoints, every server delivers.
    const webhooks = createWebhooks({
      database,
      box: createSealingBox(accounts.deriveSecret('webhook secrets')),
      allowTargets: config.webhookAllowTargets,
      retry: { baseMs: config.webhookRetryBaseMs },
      logger: logger.child({ role: 'webhooks' }),
    });
    webhooks.start();
    cleanups.push(() => webhooks.close());

    // Cleanups run in reverse: the meter pushes its last counts before the last flush.
    const flusher = startUsageFlusher({
      counters: hotState.counters,
      allowances: hotState.allowances,
      database,
      intervalMs: config.usageFlushIntervalMs,
      onError: (error) =>
        logger.warn({ err: error }, 'usage flush failed; retried on the next one'),
      onOrphans: (batch, keyIds) =>
        logger.error({ batch, keyIds }, 'usage of keys that no longer exist was not recorded'),
    });
    cleanups.push(() => flusher.close());

    const metrics = createMetrics();
    const meter = createUsageMeter(hotState.counters, {
      pushIntervalMs: 1_000,
      onError: (error) => logger.warn({ err: error }, 'usage push failed; kept for the next one'),
    });
    // Bytes reach the metrics as they are metered for billing: one count, two readers.
    const usage: UsageMeter = {
      ...meter,
      record(recorded) {
        metrics.countBytes(recorded.up, recorded.down);
        meter.record(recorded);
      },
    };
    cleanups.push(() => usage.close());

    const hub = createHub({
      logger: logger.child({ role: 'hub' }),
      pingIntervalMs: config.nodeHealth.pingIntervalMs,
      pingTimeoutMs: config.nodeHealth.pingTimeoutMs,
      streamHealth: {
        failureLimit: config.nodeHealth.streamFailureLimit,
        backoffMs: config.nodeHealth.probeBackoffMs,
        backoffMaxMs: config.nodeHealth.probeBackoffMaxMs,
      },
      async authenticate(token) {
        const node = await accounts.verifyNodeToken(token);
        return node && { nodeId: node.id };
      },
    });
    // Upstream-proxy nodes: the gateway enforces the exit policy itself.
    const proxyPolicy = createExitPolicy({ allowTargets: [...config.upstreamAllowProxies] });
    const upstreamRegistry = createUpstreamRegistry(database, await loadCredentialBox(database), {
      proxyPolicy,
      onUnreadable: (nodeId, error) =>
        logger.error({ err: error, node: nodeId }, 'upstream credentials do not open: node unused'),
    });
    const upstreams = createUpstreamExits({
      dialer: createUpstreamDialer({
        targetPolicy: createExitPolicy({ allowTargets: [...config.upstreamAllowTargets] }),
        proxyPolicy,
      }),
      load: () => upstreamRegistry.list(),
      online: (node) => gateway.addNodeExits(node.id, upstreamExits(node)),
      offline: (nodeId) => gateway.removeNodeExits(nodeId),
      probeIntervalMs: config.upstreamProbeIntervalMs,
      logger: logger.child({ role: 'upstream' }),
    });
    // Without trust in what operators declare, exits carry no location (untargeted use only).
    const declared = <T extends object>(location: T): T | Record<string, never> =>
      config.trustDeclaredLocation ? location : {};
    const upstreamExits = (node: UpstreamNode) =>
      node.exitIps.map((ip) =>
        withoutUndefined({ ip, type: node.type, ...declared(node.location) }),
      );

    // Past the allowance an address is refused for a while, whatever it presents.
    const authFailures = (name: string, points: number) =>
      createAuthFailureLimit({
        limiter: hotState.rateLimiter({
          name,
          points,
          durationSec: 60,
          blockDurationSec: AUTH_FAILURE_BLOCK_SECONDS,
        }),
        onError: (error) => logger.warn({ err: error }, 'counting a failed sign-in failed'),
      });
    const proxyAuthFailures = authFailures('proxy-auth-failures', config.authFailureLimit);
    const loginFailures = authFailures('login-failures', config.authFailureLimit);

    const gateway = createGateway({
      authFailures: proxyAuthFailures,
      timeouts: { handshakeMs: config.proxyHandshakeTimeoutMs },
      observer: metrics.gateway,
      logger,
      sessions: hotState.sessions,
      usage,
      verifyKey: (keyId, secret) => accounts.verifyKey(keyId, secret),
      passwordlessKey: (address) => accounts.passwordlessKey(address),
      limits: {
        standing: (keyIds, monthStart) => accounts.keyStanding(keyIds, monthStart),
        allowances: hotState.allowances,
        chunkBytes: config.allowanceChunkBytes,
      },
      openStream: (exit, target) =>
        upstreams.has(exit.nodeId)
          ? upstreams.openStream(exit.nodeId, exit.ip, target)
          : hub.openStream(exit.nodeId, { host: target.host, port: target.port, exitIp: exit.ip }),
    });
    cleanups.push(async () => gateway.close());
    hub.on('node-up', (node) => {
      const { hello } = node;
      const location = declared({
        country: hello.country,
        region: hello.region,
        city: hello.city,
        asn: hello.asn,
      });
      gateway.addNodeExits(
        node.nodeId,
        hello.exitIps.map((ip) => withoutUndefined({ ip, type: hello.type, ...location })),
      );
    });
    hub.on('node-down', ({ nodeId }) => gateway.removeNodeExits(nodeId));
    metrics.watch({
      onlineExits: () => gateway.exits.size,
      onlineNodes: () => hub.nodes().length,
      openTunnels: () => gateway.openTunnels(),
    });
    cleanups.push(async () => upstreams.close());
    await upstreams.start();

    const ports: Ports = { api: 0, proxy: 0, socks: 0, hub: 0 };
    const api = createApiApp({
      logger,
      dependencies: { database, hot_state: hotState },
      openapiDocument: await readFile(OPENAPI_DOCUMENT, 'utf8'),
      metrics: { registry: metrics.registry, token: config.metricsToken },
      strictAnswers: config.strictApiAnswers,
      trustProxy: config.trustProxy,
      control: {
        accounts,
        database,
        loginFailures,
        signups: createSignupLimit({
          limiter: hotState.rateLimiter({
            name: 'signups',
            points: config.signupLimitPerHour,
            durationSec: 3600,
          }),
          onError: (error) => logger.warn({ err: error }, 'counting a sign-up failed'),
        }),
        onError: (error) => logger.warn({ err: error }, 'keeping an idempotent answer failed'),
        webhooks,
        leases: createLeases(database, {
          pin: async (keyId, targeting, session) =>
            leasedExit(await gateway.sessions.pin(keyId, targeting, session)),
          async inspect(keyId, sessionId) {
            const live = await gateway.sessions.inspect(keyId, sessionId);
            return live && { exit: live.exit && leasedExit(live.exit), ttlMs: live.ttlMs };
          },
          renew: (keyId, sessionId, ttlMs) => gateway.sessions.renew(keyId, sessionId, ttlMs),
          release: (keyId, sessionId) => gateway.sessions.release(keyId, sessionId),
        }),
        nodeEarnings: config.nodeEarnings,
        nodeStatus(nodeId) {
          const connected = hub.node(nodeId);
          if (connected) return { online: true, exitIps: [...connected.hello.exitIps] };
          const exitIps = gateway.nodeExitIps(nodeId);
          return { online: exitIps.length > 0, exitIps };
        },
        nodeDeleted(nodeId) {
          hub.disconnect(nodeId);
          upstreams.remove(nodeId);
          gateway.removeNodeExits(nodeId);
        },
        proxyEndpoint: () => ({
          host: config.publicHost,
          httpPort: ports.proxy,
          socksPort: ports.socks,
          hubPort: ports.hub,
        }),
        listRegions: async () =>
          gateway
            .regions()
            .flatMap((region) => (region.country ? [{ ...region, country: region.country }] : [])),
        upstreamNodes: {
          async register(accountId, registration) {
            const node = await upstreamRegistry.register(accountId, registration);
            upstreams.add(node);
            return node;
          },
        },
      },
    });
    const apiServer = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, api);
    apiServer.keepAliveTimeout = 5_000;
    const hubServer = createHubServer(hub);

    ports.hub = await listen(hubServer, 'HUB_PORT', config.host, config.hubPort);
    cleanups.push(async () => {
      // Tunnels first: the HTTP server would otherwise wait for the upgraded sockets.
      await hub.close(config.shutdownGraceMs);
      await closeServer(hubServer, 0);
    });
    ports.proxy = await listen(gateway.httpServer, 'PROXY_PORT', config.host, config.proxyPort);
    cleanups.push(() => closeServer(gateway.httpServer, config.shutdownGraceMs));
    ports.socks = await listen(gateway.socksServer, 'SOCKS_PORT', config.host, config.socksPort);
    cleanups.push(() => closeServer(gateway.socksServer, config.shutdownGraceMs));
    ports.api = await listen(apiServer, 'API_PORT', config.host, config.apiPort);
    cleanups.push(() => closeServer(apiServer, config.shutdownGraceMs));

    let stopping: Promise<void> | undefined;
    return {
      ports,
      accounts,
      whenNodesUp: (nodeIds, timeoutMs) => hub.whenNodesUp(nodeIds, timeoutMs),
      stop: () => {
        stopping ??= undo();
        return stopping;
      },
    };
  } catch (error) {
    await undo();
    throw error;
  }
}

/** What a lease shows of its exit: never the node behind it. */
function leasedExit(exit: Exit): LeasedExit {
  return withoutUndefined({ ip: exit.ip, country: exit.country, city: exit.city, type: exit.type });
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function fail(error: unknown): never {
  const line =
    error instanceof ConfigError || error instanceof MigrationError
      ? error.message
      : `unexpected start-up failure: ${(error as Error)?.message ?? String(error)}`;
  process.stderr.write(`ipcola: cannot start: ${line}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let demo = false;
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { demo: { type: 'boolean', default: false } },
      strict: true,
    });
    demo = values.demo === true;
  } catch (error) {
    fail(new ConfigError('arguments', (error as Error).message));
  }

  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    fail(error);
  }
  const logger = createLogger(config.logLevel);

  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    logger.flush();
    process.exit(1);
  });

  let server: RunningServer | undefined;
  let signalled = false;
  const stopAndExit = (running: RunningServer) => {
    const deadline = setTimeout(() => {
      logger.error('shutdown took too long: exiting');
      logger.flush();
      process.exit(1);
    }, config.shutdownGraceMs + 5_000);
    deadline.unref();
    running.stop().then(
      () => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      },
      (error) => {
        logger.error({ err: error }, 'shutdown failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  // Installed before start-up so that a signal during start-up still shuts down cleanly.
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      logger.flush();
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'shutting down');
    if (server) stopAndExit(server);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    server = await start(config, logger);
  } catch (error) {
    logger.flush();
    fail(error);
  }
  if (demo) {
    try {
      const running = server;
      const started = await startDemo({
        accounts: running.accounts,
        dataDir: config.dataDir,
        publicHost: config.publicHost,
        ports: running.ports,
        logger,
        whenNodesUp: running.whenNodesUp,
      });
      const stopServer = running.stop;
      server = { ...running, stop: () => started.stop().then(stopServer, stopServer) };
      process.stdout.write(started.banner);
    } catch (error) {
      await server.stop();
      fail(error);
    }
  }
  if (signalled) {
    stopAndExit(server);
    return;
  }
  const { ports } = server;
  logger.info(
    { host: config.host, ports },
    `IPCola is up: API http://${config.host}:${ports.api}, HTTP proxy ${config.host}:${ports.proxy}, ` +
      `SOCKS5 ${config.host}:${ports.socks}, hub ${config.host}:${ports.hub}`,
  );
}

await main();
