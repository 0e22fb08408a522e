/** The proxy builder's choice: the username it makes and the exits online for it. */
import type { Schemas } from '../api/client.ts';

export interface ProxyChoice {
  keyId: string;
  country: string;
  city: string;
  type: Schemas['ExitType'] | '';
  sticky: boolean;
  ttlSeconds: number;
  format: Schemas['CreateProxyListRequest']['format'];
  count: number;
}

function ttlText(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The proxy username for the choice, as the gateway reads it (README "Using the proxy"). */
export function proxyUsername(choice: ProxyChoice, session = 'SESSION'): string {
  const parts = [choice.keyId];
  if (choice.country) parts.push('country', choice.country);
  if (choice.city) parts.push('city', choice.city);
  if (choice.type) parts.push('type', choice.type);
  if (choice.sticky) parts.push('session', session, 'ttl', ttlText(choice.ttlSeconds));
  return parts.join('-');
}

/** Online exit IPs matching the choice, from GET /v1/regions. */
export function onlineExits(regions: readonly Schemas['Region'][], choice: ProxyChoice): number {
  return regions
    .filter(
      (region) =>
        (!choice.country || region.country === choice.country) &&
        (!choice.city || region.city === choice.city) &&
        (!choice.type || region.type === choice.type),
    )
    .reduce((sum, region) => sum + region.exits, 0);
}

/** The body of POST /v1/proxy-lists for the choice. */
export function proxyListRequest(
  choice: ProxyChoice,
  secret: string,
): Schemas['CreateProxyListRequest'] {
  return {
    key_id: choice.keyId,
    count: choice.count,
    sticky: choice.sticky,
    format: choice.format,
    ...(secret ? { secret } : {}),
    ...(choice.country ? { country: choice.country } : {}),
    ...(choice.city ? { city: choice.city } : {}),
    ...(choice.type ? { type: choice.type } : {}),
    ...(choice.sticky ? { ttl_seconds: choice.ttlSeconds } : {}),
  };
}
