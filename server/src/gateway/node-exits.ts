/**
 * The exits a node brings to the gateway: an agent's from its hello, an upstream-proxy
 * node's from its registration. Their locations are what operators declare: without
 * trust in that, exits carry no location (untargeted use only).
 */
import type { NodeHello } from '@ipcola/shared/protocol';
import type { ExitLocation } from '@ipcola/shared/targeting';
import type { Hub } from '../hub/index.ts';
import type { UpstreamExits, UpstreamNode } from '../upstream/index.ts';
import type { Exit } from './exit-index.ts';

/** An exit as a node announces it; the gateway gives it its id and node. */
export type NodeExit = Omit<Exit, 'id' | 'nodeId'>;

/** Where the gateway keeps the exits of the nodes online now. */
export interface NodeExitsIndex {
  addNodeExits(nodeId: string, exits: readonly NodeExit[]): void;
  removeNodeExits(nodeId: string): void;
}

export function exitsOfHello(hello: NodeHello, trustDeclared: boolean): NodeExit[] {
  const location = declared(
    { country: hello.country, region: hello.region, city: hello.city, asn: hello.asn },
    trustDeclared,
  );
  return hello.exitIps.map((ip) => withoutUndefined({ ip, type: hello.type, ...location }));
}

export function exitsOfUpstreamNode(node: UpstreamNode, trustDeclared: boolean): NodeExit[] {
  return node.exitIps.map((ip) =>
    withoutUndefined({ ip, type: node.type, ...declared(node.location, trustDeclared) }),
  );
}

/** Keeps the index to the nodes that are up: agents on the hub, upstream proxies that answer. */
export function followNodes(
  index: NodeExitsIndex,
  nodes: { hub: Pick<Hub, 'on'>; upstreams: Pick<UpstreamExits, 'on'>; trustDeclared: boolean },
): void {
  const { hub, upstreams, trustDeclared } = nodes;
  hub.on('node-up', (node) =>
    index.addNodeExits(node.nodeId, exitsOfHello(node.hello, trustDeclared)),
  );
  hub.on('node-down', ({ nodeId }) => index.removeNodeExits(nodeId));
  upstreams.on('node-up', (node) =>
    index.addNodeExits(node.id, exitsOfUpstreamNode(node, trustDeclared)),
  );
  upstreams.on('node-down', ({ nodeId }) => index.removeNodeExits(nodeId));
}

function declared(location: ExitLocation, trustDeclared: boolean): ExitLocation {
  return trustDeclared ? location : {};
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
