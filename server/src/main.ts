/**
 * The composition root: the one place that reads the configuration and wires the roles
 * together. Everything else receives what it needs.
 */
import { createAccounts, loadOrCreatePepper } from './accounts/index.ts';
import { createApiServer } from './api/index.ts';
import { authFailureLimits } from './auth-failures/index.ts';
import { balanceWatcher, createPriceBook } from './billing/index.ts';
import { joinCluster } from './cluster/index.ts';
import type { Config } from './config/index.ts';
import { createGateway, followNodes } from './gateway/index.ts';
import { createHub, hubListener, nodeHealthOptions } from './hub/index.ts';
import { createLeases } from './leases/index.ts';
import { listenInTurn } from './listeners/index.ts';
import { acceptProxyProtocol } from './listeners/proxy-protocol.ts';
import type { Logger } from './log/index.ts';
import { startMetering } from './metering/index.ts';
import { createMetrics } from './metrics/index.ts';
import { clusterHub, createLiveNodes, streamOpener } from './nodes/index.ts';
import { cardPaymentsFor } from './payments/index.ts';
import { type RunningInstance, runServer } from './process/index.ts';
import { createSealingBox } from './secrets/index.ts';
import { signupsPerHour } from './signup-limit/index.ts';
import { openStores } from './store/index.ts';
import { servedCertificate } from './tls/index.ts';
import { openUpstreams } from './upstream/index.ts';
import { startWebhooks } from './webhooks/index.ts';

type Ports = RunningInstance['ports'];

type Cleanup = () => Promise<void>;

async function start(config: Config, logger: Logger, worker: number): Promise<RunningInstance> {
  const cleanups: Cleanup[] = [];
  const undo = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((error) => logger.error({ err: error }, 'clean-up failed'));
    }
  };

  try {
    const keep = (cleanup: Cleanup) => cleanups.push(cleanup);
    const tls = config.tls && servedCertificate(config.tls, logger.child({ role: 'tls' }), keep);
    const { database, hotState } = await openStores(config, logger, keep);
    const accounts = createAccounts(database, {
      pepper: await loadOrCreatePepper(database),
      trialCredit: { currency: config.billingCurrency, micro: config.trialCreditMicro },
    });
    const prices = await createPriceBook(database, { currency: config.billingCurrency, logger });
    keep(async () => prices.close());
    // Customer webhooks: billing emits, the API manages endpoints, every server delivers.
    const webhooks = startWebhooks(
      {
        database,
        box: createSealingBox(accounts.deriveSecret('webhook secrets')),
        allowTargets: config.webhookAllowTargets,
        retry: { baseMs: config.webhookRetryBaseMs },
        logger: logger.child({ role: 'webhooks' }),
      },
      keep,
    );

    const ports: Ports = { api: 0, proxy: 0, socks: 0, hub: 0 };
    const payments = cardPaymentsFor(config, { database, webhooks, logger, ports, keep });
    const metrics = createMetrics();
    const usage = startMetering(
      {
        hotState,
        database,
        currency: config.billingCurrency,
        flushIntervalMs: config.usageFlushIntervalMs,
        logger,
        countBytes: (up, down) => metrics.countBytes(up, down),
        onCharged: balanceWatcher({ database, webhooks, autoTopUp: payments?.autoTopUp }),
      },
      keep,
    );

    const hub = createHub({
      logger: logger.child({ role: 'hub' }),
      ...nodeHealthOptions(config.nodeHealth),
      proveElsewhere: (claim) => cluster.proveElsewhere(claim),
      // Agents attach to every worker of this host: no customer tunnel is relayed within it.
      worker: { id: worker, count: config.workers },
      authenticate: accounts.nodeAuthenticator(config.gatewayTimeouts.outageGraceMs),
    });
    const { registry: upstreamRegistry, exits: upstreams } = await openUpstreams(database, {
      allowProxies: config.upstreamAllowProxies,
      allowTargets: config.upstreamAllowTargets,
      probeIntervalMs: config.upstreamProbeIntervalMs,
      logger,
    });
    const authFailures = authFailureLimits(hotState, {
      perMinute: config.authFailureLimit,
      onError: (error) => logger.warn({ err: error }, 'counting a failed sign-in failed'),
    });
    const gateway = createGateway({
      authFailures: authFailures('proxy-auth-failures'),
      timeouts: config.gatewayTimeouts,
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
        prices,
      },
      openStream: streamOpener(hub, upstreams, () => cluster),
    });
    keep(async () => gateway.close());
    const cluster = await joinCluster({
      hotState,
      secret: accounts.deriveSecret('instance hop'),
      index: gateway,
      hub: clusterHub(hub),
      listen: { host: config.host, port: config.peerPort, worker, advertisedHost: config.peerHost },
      graceMs: config.shutdownGraceMs,
      onHop: (side) => metrics.countHop(side),
      logger,
    });
    keep(() => cluster.close());
    followNodes(cluster.index, { hub, upstreams, logger, ...config }, keep);
    metrics.watch({
      onlineExits: () => gateway.exits.size,
      onlineNodes: () => {
        const nodes = hub.nodes();
        const v1 = nodes.filter((node) => node.protocol === 'h2').length;
        return { v1, v2: nodes.length - v1 };
      },
      openTunnels: () => gateway.openTunnels(),
    });
    keep(async () => upstreams.close());
    await upstreams.start();

    const nodes = createLiveNodes({ hub, gateway, upstreams, registry: upstreamRegistry, cluster });
    let draining = false;
    const apiServer = await createApiServer({
      draining: () => draining,
      tls,
      logger,
      dependencies: { database, hot_state: hotState },
      metrics: { registry: metrics.registry, token: config.metricsToken },
      strictAnswers: config.strictApiAnswers,
      trustProxy: config.trustProxy,
      control: {
        accounts,
        database,
        loginFailures: authFailures('login-failures'),
        signups: signupsPerHour(hotState, {
          perHour: config.signupLimitPerHour,
          onError: (error) => logger.warn({ err: error }, 'counting a sign-up failed'),
        }),
        onError: (error) => logger.warn({ err: error }, 'keeping an idempotent answer failed'),
        leases: createLeases(database, gateway.sessions),
        prices,
        webhooks,
        payments,
        nodeStatus: nodes.status,
        openConnections: () => gateway.openConnections(),
        nodeDeleted: nodes.deleted,
        proxyEndpoint: () => ({
          host: config.publicHost,
          httpPort: ports.proxy,
          socksPort: ports.socks,
          hubPort: ports.hub,
          hubTls: tls !== undefined,
        }),
        listRegions: async () => gateway.regions(),
        upstreamNodes: nodes,
      },
    });
    const graceMs = config.shutdownGraceMs;
    // Nodes leaving with this instance are announced as moving: others wait for them.
    const hubListening = hubListener(hub, {
      tls,
      port: config.hubPort,
      graceMs,
      draining: cluster.draining,
    });
    for (const [server, from] of [
      [gateway.httpServer, config.proxyProtocolFrom],
      [gateway.socksServer, config.proxyProtocolFrom],
      [hubListening.server, config.hubProxyProtocolFrom],
    ] as const) {
      acceptProxyProtocol(server, {
        from,
        timeoutMs: config.gatewayTimeouts.handshakeMs,
        onRefused: (reason, peer) => logger.warn({ peer, reason }, 'balancer connection refused'),
      });
    }
    await listenInTurn(
      {
        hub: hubListening,
        proxy: { server: gateway.httpServer, variable: 'PROXY_PORT', port: config.proxyPort },
        socks: { server: gateway.socksServer, variable: 'SOCKS_PORT', port: config.socksPort },
        api: { server: apiServer, variable: 'API_PORT', port: config.apiPort },
      },
      { host: config.host, graceMs, ports, onListening: keep },
    );

    let stopping: Promise<void> | undefined;
    return {
      ports,
      accounts,
      whenNodesUp: (nodeIds, timeoutMs) => hub.whenNodesUp(nodeIds, timeoutMs),
      stop: () => {
        // A balancer's health checks take the instance out (/readyz 503) while it still
        // serves: a connection it sends until then is answered, not reset by a closed port.
        draining = true;
        stopping ??= new Promise((wait) => setTimeout(wait, config.shutdownDelayMs)).then(undo);
        return stopping;
      },
    };
  } catch (error) {
    await undo();
    throw error;
  }
}

await runServer(start);
