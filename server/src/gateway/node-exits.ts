/**
 * The exits a node brings to the gateway: an agent's from its hello, an upstream-proxy
 * node's from its registration, each placed where the geolocation database says its IP
 * is. What the operator declares is kept only where it agrees with the database at
 * country level (its region and city then refine the database's); an address the
 * database does not know (a private test network) takes the declared place only when
 * TRUST_DECLARED_LOCATION says so, and is otherwise unplaced (untargeted use only).
 */
import type { ExitLocation, ExitType } from '@ipcola/shared/targeting';
import {
  type GeoLocator,
  type GeoLocatorOptions,
  openGeoLocator,
  type Place,
} from '../geo/index.ts';
import type { ConnectedNode, Hub } from '../hub/index.ts';
import type { Logger } from '../log/index.ts';
import type { UpstreamExits, UpstreamNode } from '../upstream/index.ts';
import type { Exit } from './exit-index.ts';

/** An exit as a node announces it; the gateway gives it its id and node. */
export type NodeExit = Omit<Exit, 'id' | 'nodeId'>;

/** Where the gateway keeps the exits of the nodes online now. */
export interface NodeExitsIndex {
  addNodeExits(nodeId: string, exits: readonly NodeExit[]): void;
  removeNodeExits(nodeId: string): void;
}

export interface ExitPlacing {
  readonly geo: Pick<GeoLocator, 'locate'>;
  readonly trustDeclared: boolean;
}

/**
 * What a node brings: the exit IPs that may carry traffic (an agent's proven ones, with
 * the public address behind NAT where it differs), their type, and the place its
 * operator declared.
 */
interface Announcement {
  readonly exits: readonly { readonly ip: string; readonly publicIp?: string }[];
  readonly type: ExitType;
  readonly declared: ExitLocation;
  /** Streams each exit can carry at once, when the node says. */
  readonly capacity?: number;
}

/** The place of one exit IP, and whether the declared country was overruled. */
function placeExit(
  ip: string,
  declared: ExitLocation,
  { geo, trustDeclared }: ExitPlacing,
): { place: Place; corrected: boolean } {
  const found = geo.locate(ip);
  let where: Place;
  let corrected = false;
  if (found.country === undefined) {
    where = trustDeclared ? pick(declared) : {};
  } else if (declared.country === found.country) {
    where = {
      country: found.country,
      region: declared.region ?? found.region,
      city: declared.city ?? found.city,
    };
  } else {
    where = pick(found);
    corrected = declared.country !== undefined;
  }
  const asn =
    found.asn !== undefined
      ? { asn: found.asn, asOrganization: found.asOrganization }
      : { asn: trustDeclared ? declared.asn : undefined };
  return { place: withoutUndefined({ ...where, ...asn }), corrected };
}

/**
 * Keeps the index to the nodes that are up (agents on the hub, upstream proxies that
 * answer), placed by the geolocation databases (GEOIP_DB, ASN_DB); when one is
 * (re)loaded, every online node's exits are placed again.
 */
export function followNodes(
  index: NodeExitsIndex,
  nodes: {
    hub: Pick<Hub, 'on'>;
    upstreams: Pick<UpstreamExits, 'on'>;
    trustDeclaredLocation: boolean;
    logger: Logger;
  } & Pick<GeoLocatorOptions, 'geoIpDb' | 'asnDb'>,
  keep: (cleanup: () => Promise<void>) => void,
): void {
  const { hub, upstreams, trustDeclaredLocation: trustDeclared } = nodes;
  const logger = nodes.logger.child({ role: 'geo' });
  const geo = openGeoLocator({ geoIpDb: nodes.geoIpDb, asnDb: nodes.asnDb, logger });
  keep(async () => geo.close());
  const placing: ExitPlacing = { geo, trustDeclared };
  const online = new Map<string, { announcement: Announcement; exits: NodeExit[] }>();
  const place = (nodeId: string, announcement: Announcement) => {
    const exits = exitsOf(announcement, placing, (ip, place) =>
      logger.warn(
        { nodeId, ip, declared: announcement.declared.country, located: place.country },
        "an exit's declared country disagrees with the geolocation database: the database's is used",
      ),
    );
    const before = online.get(nodeId);
    online.set(nodeId, { announcement, exits });
    if (before && JSON.stringify(before.exits) === JSON.stringify(exits)) return;
    index.addNodeExits(nodeId, exits);
  };
  const up = (nodeId: string, announcement: Announcement) => {
    online.delete(nodeId);
    place(nodeId, announcement);
  };
  const down = (nodeId: string) => {
    online.delete(nodeId);
    index.removeNodeExits(nodeId);
  };
  hub.on('node-up', (node) => up(node.nodeId, announcementOfAgent(node)));
  hub.on('node-down', ({ nodeId }) => down(nodeId));
  upstreams.on('node-up', (node) => up(node.id, announcementOfUpstream(node)));
  upstreams.on('node-down', ({ nodeId }) => down(nodeId));
  geo.onChange(() => {
    for (const [nodeId, { announcement }] of online) place(nodeId, announcement);
  });
}

/** An agent's exits are the ones it proved (the hub saw connections from them). */
function announcementOfAgent(node: ConnectedNode): Announcement {
  const { type, country, region, city, asn } = node.hello;
  const exits = node.exits
    .filter((exit) => exit.state === 'verified')
    .map(({ ip, publicIp }) => (publicIp === undefined ? { ip } : { ip, publicIp }));
  // The node's stream limit is shared by all its exit IPs.
  const capacity = Math.max(1, Math.floor(node.hello.maxStreams / node.hello.exitIps.length));
  return { exits, type, capacity, declared: withoutUndefined({ country, region, city, asn }) };
}

/** An upstream proxy's exits are as its supplier registered them (its proxy is probed). */
function announcementOfUpstream(node: UpstreamNode): Announcement {
  return { exits: node.exitIps.map((ip) => ({ ip })), type: node.type, declared: node.location };
}

function exitsOf(
  announcement: Announcement,
  placing: ExitPlacing,
  onCorrected?: (ip: string, place: Place) => void,
): NodeExit[] {
  return announcement.exits.map(({ ip, publicIp }) => {
    // Targets see the public address, so that is the one the database places.
    const { place, corrected } = placeExit(publicIp ?? ip, announcement.declared, placing);
    if (corrected) onCorrected?.(ip, place);
    const { type, capacity } = announcement;
    return withoutUndefined({ ip, publicIp, type, capacity, ...place });
  });
}

function pick({ country, region, city }: ExitLocation): Place {
  return { country, region, city };
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
