/**
 * Where deliveries may go: public addresses only, judged like an exit node's targets
 * (the exit policy from @ipcola/shared) on the resolved address, which is then the one
 * dialled, so a name that resolves somewhere else the second time (DNS rebinding) cannot
 * reach a private address. Plain http is for the allow-list only (`WEBHOOK_ALLOW_TARGETS`:
 * tests, private networks); everything else must be https.
 */
import { unmapped } from '@ipcola/shared/addresses';
import {
  createExitPolicy,
  type ExitPolicy,
  type LookupAll,
  normalizeTargetHost,
  resolveTarget,
} from '@ipcola/shared/exit-policy';
import ipaddr from 'ipaddr.js';
import { ipcolaError } from '../errors/index.ts';

export const URL_MAX_LENGTH = 2048;

export interface TargetRules {
  policy: ExitPolicy;
  /** Is the address inside WEBHOOK_ALLOW_TARGETS (the only place plain http may go)? */
  allowListed(address: string): boolean;
  lookup: LookupAll | undefined;
}

export function targetRules(allowTargets: readonly string[], lookup?: LookupAll): TargetRules {
  const ranges = allowTargets.map((cidr) => ipaddr.parseCIDR(cidr));
  return {
    policy: createExitPolicy({ allowTargets: [...allowTargets] }),
    allowListed(address) {
      if (!ipaddr.isValid(address)) return false;
      const parsed = unmapped(ipaddr.parse(address));
      return ranges.some(
        ([network, prefix]) => network.kind() === parsed.kind() && parsed.match(network, prefix),
      );
    },
    lookup,
  };
}

/** Where a URL's requests go: its host as written and its port. */
function hostAndPort(url: URL): { host: string; port: number } {
  return {
    host: url.hostname,
    port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
  };
}

/** The URL when it may be registered; otherwise invalid_request saying why. */
export async function checkRegistration(text: string, rules: TargetRules): Promise<URL> {
  const refuse = (why: string) => ipcolaError('invalid_request', `url: ${why}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw refuse('not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw refuse('must be https');
  if (url.username || url.password) throw refuse('must not carry credentials');
  if (url.hash) throw refuse('must not have a fragment');
  // The URL is kept as the parser writes it, which may be longer than what was sent.
  if (url.toString().length > URL_MAX_LENGTH) {
    throw refuse(`must be at most ${URL_MAX_LENGTH} characters`);
  }
  const { host, port } = hostAndPort(url);
  const normalized = normalizeTargetHost(host);
  if (normalized.kind === 'invalid') throw refuse(normalized.reason);
  const resolved = await resolveTarget(host, port, rules.policy, rules.lookup);
  // A name that does not resolve yet may be set up later; one that resolves somewhere
  // private never may.
  if (!resolved.ok && (resolved.code === 'target_forbidden' || normalized.kind === 'ip')) {
    throw refuse(`${resolved.reason}: webhooks go to public addresses only`);
  }
  if (url.protocol === 'http:') {
    const addresses = resolved.ok ? resolved.addresses : [];
    if (addresses.length === 0 || !addresses.every((address) => rules.allowListed(address))) {
      throw refuse('must be https (plain http only to WEBHOOK_ALLOW_TARGETS)');
    }
  }
  return url;
}

export type DeliveryTarget =
  | { ok: true; address: string }
  | { ok: false; error: 'target_forbidden' | 'target_unreachable'; reason: string };

/** The one checked address a delivery to `url` dials now. */
export async function resolveDelivery(url: URL, rules: TargetRules): Promise<DeliveryTarget> {
  const { host, port } = hostAndPort(url);
  const resolved = await resolveTarget(host, port, rules.policy, rules.lookup);
  if (!resolved.ok) return { ok: false, error: resolved.code, reason: resolved.reason };
  const address = resolved.addresses[0] as string;
  if (url.protocol === 'http:' && !rules.allowListed(address)) {
    return {
      ok: false,
      error: 'target_forbidden',
      reason: `${address} is not in WEBHOOK_ALLOW_TARGETS, where alone plain http may go`,
    };
  }
  return { ok: true, address };
}
