import { createExitPolicy } from '@ipcola/shared/exit-policy';
import type { Logger } from '../log/index.ts';
import type { Database } from '../store/index.ts';
import { loadCredentialBox } from './credential-box.ts';
import { createUpstreamRegistry, type UpstreamRegistry } from './registry.ts';
import { createUpstreamDialer } from './upstream-dialer.ts';
import { createUpstreamExits, type UpstreamExits } from './upstream-exits.ts';

export interface UpstreamsOptions {
  /** CIDRs a registered proxy may be at (UPSTREAM_ALLOW_PROXIES). */
  allowProxies: readonly string[];
  /** CIDRs of targets streams through a proxy may reach (UPSTREAM_ALLOW_TARGETS). */
  allowTargets: readonly string[];
  probeIntervalMs: number;
  logger: Logger;
}

/**
 * The upstream-proxy nodes in the database, and those of them this gateway carries
 * streams through. No agent stands behind them, so the gateway enforces the agent's
 * exit policy itself.
 */
export async function openUpstreams(
  database: Database,
  options: UpstreamsOptions,
): Promise<{ registry: UpstreamRegistry; exits: UpstreamExits }> {
  const { logger } = options;
  const proxyPolicy = createExitPolicy({ allowTargets: [...options.allowProxies] });
  const registry = createUpstreamRegistry(database, await loadCredentialBox(database), {
    proxyPolicy,
    onUnreadable: (nodeId, error) =>
      logger.error({ err: error, node: nodeId }, 'upstream credentials do not open: node unused'),
  });
  const exits = createUpstreamExits({
    dialer: createUpstreamDialer({
      targetPolicy: createExitPolicy({ allowTargets: [...options.allowTargets] }),
      proxyPolicy,
    }),
    load: () => registry.list(),
    probeIntervalMs: options.probeIntervalMs,
    logger: logger.child({ role: 'upstream' }),
  });
  return { registry, exits };
}
