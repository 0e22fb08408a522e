/**
 * Dialling the hub: one HTTP/1.1 Upgrade request out (the agent never listens). On 101
 * the socket is handed back, with any tunnel bytes that arrived behind the response
 * pushed back into it.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import {
  AGENT_INSTANCE_HEADER,
  EXIT_PROOF_HEADER,
  formatHeldWorkers,
  HELD_WORKERS_HEADER,
  HELLO_HEADER,
  type HubWorker,
  NODE_ID_HEADER,
  parseWorker,
  TUNNEL_PATH,
  TUNNEL_UPGRADE_OFFER,
  type TunnelProtocol,
  tunnelProtocolOf,
  upgradeTokenOf,
  WORKER_HEADER,
} from '@ipcola/shared/protocol';

export interface DialOptions {
  /** The name the certificate must carry and the Host header. */
  readonly host: string;
  readonly port: number;
  /** The address to connect to when `host` is a name with several (see pinnedLookup). */
  readonly address?: { readonly address: string; readonly family: 4 | 6 };
  readonly token: string;
  /** The encoded hello (encodeHello). */
  readonly hello: string;
  readonly agentVersion: string;
  /** This agent process's id (AGENT_INSTANCE_HEADER). */
  readonly instance: string;
  /**
   * The workers of this hub address the agent holds a tunnel on: a hub that is one of
   * them refuses (HELD_WORKER_STATUS) instead of taking the tunnel over.
   */
  readonly heldWorkers?: readonly number[];
  /** The tunnel protocols to offer, newest first; every one this agent speaks by default. */
  readonly protocols?: readonly TunnelProtocol[];
  readonly tls: false | ConnectionOptions;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Replaces the TCP (and TLS) dial, e.g. to go through a relay; `tls` is then ignored. */
  readonly createConnection?: (target: { host: string; port: number }) => Duplex;
}

export interface Dialled {
  readonly socket: Socket;
  /** The tunnel protocol the hub switched to (the newest of ours it speaks). */
  readonly protocol: TunnelProtocol;
  /** The node id the hub recognised the token as (for logs). */
  readonly nodeId: string | undefined;
  /** The nonce to prove the exit IPs with; undefined from a hub that asks for no proofs. */
  readonly proofNonce: string | undefined;
  /** Which worker of its host the hub is; undefined from a hub that does not say (older). */
  readonly worker: HubWorker | undefined;
}

/** The hub answered, but not with 101: the status says whether retrying can help. */
export class HubRefusedError extends Error {
  readonly code = 'hub_refused';
  readonly status: number;
  /** The first line of the hub's answer. */
  readonly reason: string;
  constructor(status: number, reason: string) {
    super(`hub refused the tunnel with ${status}: ${reason}`);
    this.name = 'HubRefusedError';
    this.status = status;
    this.reason = reason;
  }
}

const REFUSAL_BODY_LIMIT = 512;

export function dialHub(options: DialOptions): Promise<Dialled> {
  const { host, port, tls, createConnection } = options;
  const request = tls ? httpsRequest : httpRequest;
  // Also cuts a hub that stalls in the middle of a refusal's body, like one that is silent.
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const offer = options.protocols?.map(upgradeTokenOf).join(', ') ?? TUNNEL_UPGRADE_OFFER;
  const req = request({
    ...(tls || {}),
    host,
    port,
    ...(options.address ? { lookup: pinnedLookup(options.address) } : {}),
    path: TUNNEL_PATH,
    method: 'GET',
    signal: AbortSignal.any([options.signal, timeout]),
    headers: {
      Connection: 'Upgrade',
      Upgrade: offer,
      Authorization: `Bearer ${options.token}`,
      [HELLO_HEADER]: options.hello,
      [AGENT_INSTANCE_HEADER]: options.instance,
      ...(options.heldWorkers?.length
        ? { [HELD_WORKERS_HEADER]: formatHeldWorkers(options.heldWorkers) }
        : {}),
      'User-Agent': `ipcola-agent/${options.agentVersion}`,
    },
    // Node uses createConnection only without an agent; otherwise a fresh agent, so
    // that the tunnel's socket never sits in a shared keep-alive pool.
    ...(createConnection
      ? { createConnection: () => createConnection({ host, port }) }
      : { agent: false }),
  });

  return new Promise<Dialled>((resolve, reject) => {
    const fail = (error: Error) => {
      if (!timeout.aborted || options.signal.aborted) reject(error);
      else
        reject(
          new Error(`the hub did not answer within ${options.timeoutMs} ms`, { cause: error }),
        );
    };
    req.once('error', fail);
    req.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      req.off('error', fail);
      const upgrade = (res.headers.upgrade ?? '').trim().toLowerCase();
      const protocol = tunnelProtocolOf(upgrade);
      if (!protocol || !(options.protocols?.includes(protocol) ?? true)) {
        socket.destroy();
        reject(new Error(`the hub switched to "${upgrade}", not one of ${offer}`));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      const nodeId = res.headers[NODE_ID_HEADER];
      const proofNonce = res.headers[EXIT_PROOF_HEADER];
      resolve({
        socket,
        protocol,
        nodeId: typeof nodeId === 'string' ? nodeId : undefined,
        proofNonce: typeof proofNonce === 'string' ? proofNonce : undefined,
        worker: parseWorker(res.headers[WORKER_HEADER]),
      });
    });
    req.once('response', (res: IncomingMessage) => {
      readReason(res).then((reason) => {
        req.destroy();
        reject(new HubRefusedError(res.statusCode ?? 0, reason));
      }, fail);
    });
    req.end();
  });
}

/**
 * A lookup that answers one address whatever it is asked: the connection goes to that
 * address while the request keeps the hub's name, so that TLS checks the certificate
 * against the name (servername) and the Host header carries it.
 */
export function pinnedLookup({
  address,
  family,
}: {
  address: string;
  family: 4 | 6;
}): LookupFunction {
  return ((
    _hostname: string,
    options: { all?: boolean },
    callback: (...args: unknown[]) => void,
  ) => {
    // Node 20's autoSelectFamily asks for every address ({ all: true }).
    if (options?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as LookupFunction;
}

/** The first line of a refusal body, for the operator's log. */
async function readReason(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res as AsyncIterable<string>) {
    text += chunk;
    if (text.length >= REFUSAL_BODY_LIMIT) break;
  }
  return text.slice(0, REFUSAL_BODY_LIMIT).split('\n', 1)[0]?.trim() || (res.statusMessage ?? '');
}
