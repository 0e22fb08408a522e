/**
 * A real hub (server/src/hub) on 127.0.0.1, for tests that run the agent against it.
 *
 * The hub lives in the server workspace, which depends on this one; a static import
 * from here would pull server files into the agent's TypeScript project (outside its
 * rootDir, and a reference cycle). So the module is loaded by URL at run time and
 * typed here with the few members the tests use: if the hub's API drifts from this
 * shape, these tests fail when they call it.
 */
import { type EventEmitter, once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NodeHello } from '@ipcola/shared/protocol';

export interface HubNode {
  readonly nodeId: string;
  readonly hello: NodeHello;
  readonly remoteAddress: string | undefined;
  readonly activeStreams: number;
  /** The tunnel protocol the hub chose: 'mux' (v2) or 'h2' (v1). */
  readonly protocol: 'h2' | 'mux';
}

export interface HubNodeDown {
  readonly nodeId: string;
  readonly reason: string;
  readonly error?: Error;
}

export interface HubStreamTarget {
  readonly host: string;
  readonly port: number;
  readonly exitIp: string;
  readonly streamLabel?: string;
  readonly signal?: AbortSignal;
}

interface HubEvents {
  'node-up': [node: HubNode];
  'node-down': [event: HubNodeDown];
}

export interface TestHub extends EventEmitter<HubEvents> {
  openStream(nodeId: string, target: HubStreamTarget): Promise<Duplex>;
  nodes(): HubNode[];
  close(graceMs?: number): Promise<void>;
}

interface HubModule {
  createHub(options: {
    authenticate: (token: string) => Promise<{ nodeId: string } | null>;
    pingIntervalMs?: number;
    pingTimeoutMs?: number;
  }): TestHub;
  createHubServer(hub: TestHub): Server;
}

const HUB_MODULE = new URL('../../../server/src/hub/index.ts', import.meta.url).href;

let loaded: Promise<HubModule> | undefined;
function hubModule(): Promise<HubModule> {
  loaded ??= import(HUB_MODULE) as Promise<HubModule>;
  return loaded;
}

export interface RunningHub {
  readonly hub: TestHub;
  readonly port: number;
  /** Closes the hub (cutting its nodes) and its listener; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a hub that accepts exactly the tokens in `tokens` (token → node id). */
export async function startHub(
  tokens: Readonly<Record<string, string>>,
  options: { port?: number } = {},
): Promise<RunningHub> {
  const { createHub, createHubServer } = await hubModule();
  const hub = createHub({
    authenticate: async (token) => {
      const nodeId = Object.hasOwn(tokens, token) ? tokens[token] : undefined;
      return nodeId === undefined ? null : { nodeId };
    },
    pingIntervalMs: 500,
    pingTimeoutMs: 5_000,
  });
  const server = createHubServer(hub);
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return stopped;
  };
  return { hub, port: (server.address() as AddressInfo).port, stop };
}

export async function nextNodeUp(hub: TestHub): Promise<HubNode> {
  const [node] = await once(hub, 'node-up');
  return node;
}

export async function nextNodeDown(hub: TestHub): Promise<HubNodeDown> {
  const [event] = await once(hub, 'node-down');
  return event;
}
