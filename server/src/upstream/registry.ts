/**
 * Upstream-proxy nodes in the database: registering one (the `nodes` row without a
 * token, its proxy in `upstream_proxies` with the credentials sealed, its exit IPs in
 * `exit_ips`, all in one transaction) and listing the live ones.
 */
import { isIP } from 'node:net';
import type { ExitPolicy } from '@ipcola/shared/exit-policy';
import { canonicalIp, HELLO_MAX_EXIT_IPS } from '@ipcola/shared/protocol';
import {
  ASN_MAX,
  type ExitLocation,
  isAsn,
  isCountryCode,
  isSlug,
  SLUG_RULE,
} from '@ipcola/shared/targeting';
import { checkDisplayName, checkNodeType, type NodeType, newPublicId } from '../accounts/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { Database } from '../store/index.ts';
import type { CredentialBox } from './credential-box.ts';
import { parseUpstreamUrl, type UpstreamProxy } from './proxy-url.ts';

/** Where a node's exits are, as its supplier declared it. */
export interface DeclaredLocation extends ExitLocation {
  readonly country: string;
}

/** A live upstream-proxy node: what the gateway needs to carry streams through it. */
export interface UpstreamNode {
  readonly id: string;
  readonly type: NodeType;
  readonly proxy: UpstreamProxy;
  /** Canonical, no duplicates. */
  readonly exitIps: readonly string[];
  readonly location: DeclaredLocation;
}

export interface RegisteredUpstreamNode extends UpstreamNode {
  readonly accountId: string;
  readonly name: string;
  readonly createdAt: Date;
}

/** A registration as the API received it (field names as in the request body). */
export interface UpstreamRegistration {
  name: string;
  type: NodeType;
  upstream: {
    url: string;
    exit_ips: string[];
    country: string;
    region?: string;
    city?: string;
    asn?: number;
  };
}

export interface UpstreamRegistry {
  /** Checks, stores and returns the node; throws invalid_request naming the bad field. */
  register(accountId: string, registration: UpstreamRegistration): Promise<RegisteredUpstreamNode>;
  /** Every upstream node that is not deleted; rows whose credentials do not open are skipped. */
  list(): Promise<UpstreamNode[]>;
}

export interface UpstreamRegistryOptions {
  /** Judges an upstream proxy given by IP address at registration (names are judged when dialled). */
  proxyPolicy: ExitPolicy;
  /** A row that cannot be used (its credentials do not open under this server's key). */
  onUnreadable?(nodeId: string, error: unknown): void;
}

interface UpstreamRow {
  id: string;
  type: NodeType;
  country: string;
  region: string | null;
  city: string | null;
  asn: number | null;
  protocol: UpstreamProxy['protocol'];
  host: string;
  port: number;
  credentials: string | null;
  exit_ips: string[];
}

export function createUpstreamRegistry(
  db: Database,
  box: CredentialBox,
  options: UpstreamRegistryOptions,
): UpstreamRegistry {
  return {
    async register(accountId, registration) {
      const checked = checkRegistration(registration, options.proxyPolicy);
      const id = newPublicId();
      const { proxy, exitIps, location } = checked;
      const sealed = proxy.credentials ? box.seal(JSON.stringify(proxy.credentials), id) : null;
      const createdAt = await db.transaction(async (tx) => {
        const [row] = await tx.query<{ created_at: Date }>(
          `INSERT INTO nodes (id, account_id, name, type, token_hash, country, region, city, asn)
           VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8) RETURNING created_at`,
          [
            id,
            accountId,
            checked.name,
            checked.type,
            location.country,
            location.region ?? null,
            location.city ?? null,
            location.asn ?? null,
          ],
        );
        await tx.query(
          `INSERT INTO upstream_proxies (node_id, protocol, host, port, credentials)
           VALUES ($1, $2, $3, $4, $5)`,
          [id, proxy.protocol, proxy.host, proxy.port, sealed],
        );
        for (const ip of exitIps) {
          await tx.query(
            `INSERT INTO exit_ips (node_id, ip, country, region, city, asn)
             VALUES ($1, $2, $3, $4, $5, $6)`,
            [
              id,
              ip,
              location.country,
              location.region ?? null,
              location.city ?? null,
              location.asn ?? null,
            ],
          );
        }
        if (!row) throw new Error('registerUpstreamNode: the inserted row is missing');
        return row.created_at;
      });
      return {
        id,
        accountId,
        name: checked.name,
        type: checked.type,
        proxy,
        exitIps,
        location,
        createdAt,
      };
    },

    async list() {
      const rows = await db.query<UpstreamRow>(
        `SELECT n.id, n.type, n.country, n.region, n.city, n.asn,
                u.protocol, u.host, u.port, u.credentials,
                ARRAY(SELECT host(e.ip) FROM exit_ips e WHERE e.node_id = n.id ORDER BY e.ip)
                  AS exit_ips
         FROM upstream_proxies u JOIN nodes n ON n.id = u.node_id
         WHERE n.deleted_at IS NULL
         ORDER BY n.id`,
      );
      const nodes: UpstreamNode[] = [];
      for (const row of rows) {
        let credentials: UpstreamProxy['credentials'];
        try {
          credentials = row.credentials ? JSON.parse(box.open(row.credentials, row.id)) : undefined;
        } catch (error) {
          options.onUnreadable?.(row.id, error);
          continue;
        }
        const location: DeclaredLocation = {
          country: row.country,
          ...(row.region !== null ? { region: row.region } : {}),
          ...(row.city !== null ? { city: row.city } : {}),
          ...(row.asn !== null ? { asn: Number(row.asn) } : {}),
        };
        nodes.push({
          id: row.id,
          type: row.type,
          proxy: {
            protocol: row.protocol,
            host: row.host,
            port: Number(row.port),
            ...(credentials ? { credentials } : {}),
          },
          exitIps: row.exit_ips,
          location,
        });
      }
      return nodes;
    },
  };
}

/**
 * What the schema cannot say: a usable URL, real IP addresses, an assigned country.
 * The schema already checked types, lengths and patterns; this re-checks what the
 * database relies on, so a caller other than the API cannot store nonsense either.
 */
function checkRegistration(
  registration: UpstreamRegistration,
  proxyPolicy: ExitPolicy,
): {
  name: string;
  type: NodeType;
  proxy: UpstreamProxy;
  exitIps: string[];
  location: DeclaredLocation;
} {
  const refuse = (message: string) => ipcolaError('invalid_request', message);
  const { name, type, upstream } = registration;
  checkDisplayName(name);
  checkNodeType(type);

  const parsed = parseUpstreamUrl(upstream.url);
  if (!parsed.ok) throw refuse(`upstream.url ${parsed.reason}`);
  const { proxy } = parsed;
  if (isIP(proxy.host) !== 0) {
    // An IP literal is judged now; a name is judged on each resolution when dialled.
    const decision = proxyPolicy.checkAddress(proxy.host);
    if (!decision.allowed) {
      throw refuse(`upstream.url is not allowed as an upstream proxy: ${decision.reason}`);
    }
  }
  const port = proxyPolicy.checkPort(proxy.port);
  if (!port.allowed)
    throw refuse(`upstream.url is not allowed as an upstream proxy: ${port.reason}`);

  if (!Array.isArray(upstream.exit_ips) || upstream.exit_ips.length === 0) {
    throw refuse('upstream.exit_ips must list at least one IP address');
  }
  if (upstream.exit_ips.length > HELLO_MAX_EXIT_IPS) {
    throw refuse(`upstream.exit_ips must hold at most ${HELLO_MAX_EXIT_IPS} addresses`);
  }
  const exitIps: string[] = [];
  for (const [index, ip] of upstream.exit_ips.entries()) {
    const canonical = typeof ip === 'string' ? canonicalIp(ip) : null;
    if (canonical === null) throw refuse(`upstream.exit_ips[${index}] is not an IP address`);
    if (exitIps.includes(canonical)) throw refuse(`upstream.exit_ips[${index}] is a duplicate`);
    exitIps.push(canonical);
  }

  if (!isCountryCode(upstream.country)) {
    throw refuse('upstream.country must be an assigned ISO 3166-1 alpha-2 code, lowercase');
  }
  const location: { -readonly [K in keyof DeclaredLocation]: DeclaredLocation[K] } = {
    country: upstream.country,
  };
  for (const field of ['region', 'city'] as const) {
    const value = upstream[field];
    if (value === undefined) continue;
    if (!isSlug(value)) throw refuse(`upstream.${field} must be ${SLUG_RULE}`);
    location[field] = value;
  }
  if (upstream.asn !== undefined) {
    if (!isAsn(upstream.asn)) {
      throw refuse(`upstream.asn must be an integer from 1 to ${ASN_MAX}`);
    }
    location.asn = upstream.asn;
  }
  return { name, type, proxy, exitIps, location };
}
