/**
 * The HTTP/1.1 half of a node's arrival: checking its Upgrade request and answering it
 * on the raw socket (101 to switch to the tunnel protocol, or a one-line refusal).
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  AGENT_INSTANCE_HEADER,
  AGENT_INSTANCE_PATTERN,
  EXIT_PROOF_HEADER,
  formatWorker,
  HELD_WORKERS_HEADER,
  HELLO_HEADER,
  type HubWorker,
  NODE_ID_HEADER,
  type NodeHello,
  parseHeldWorkers,
  parseHello,
  TUNNEL_PATH,
  TUNNEL_UPGRADE_OFFER,
  type TunnelProtocol,
  tunnelProtocolOf,
  upgradeTokenOf,
  WORKER_HEADER,
} from '@ipcola/shared/protocol';

export interface Refusal {
  readonly status: number;
  /** One line for the operator reading the agent's log; never echoes the token. */
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export type UpgradeCheck =
  | {
      ok: true;
      token: string;
      hello: NodeHello;
      /** The agent process's id; undefined from agents that send none (older versions). */
      instance: string | undefined;
      /** The workers of this host the agent already holds a tunnel on (none from older agents). */
      heldWorkers: ReadonlySet<number>;
      /** The newest tunnel protocol both speak. */
      protocol: TunnelProtocol;
    }
  | { ok: false; refusal: Refusal };

const TOKEN_MAX_LENGTH = 512;
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Everything that can be judged without asking the node store: cheap checks first, so
 * that a broken or hostile request never costs a database round trip.
 */
export function checkUpgradeRequest(req: IncomingMessage): UpgradeCheck {
  const path = (req.url ?? '').split('?', 1)[0];
  if (path !== TUNNEL_PATH) return refuse(404, `no tunnel at ${path}; use ${TUNNEL_PATH}`);
  if (req.method !== 'GET') return refuse(405, 'the tunnel upgrade is a GET', { Allow: 'GET' });
  const offered = new Set(
    (req.headers.upgrade ?? '')
      .split(',')
      .map((token) => tunnelProtocolOf(token.trim().toLowerCase())),
  );
  const protocol = offered.has('mux') ? 'mux' : offered.has('h2') ? 'h2' : undefined;
  if (!protocol) {
    return refuse(426, `this hub speaks ${TUNNEL_UPGRADE_OFFER}`, {
      Upgrade: TUNNEL_UPGRADE_OFFER,
    });
  }
  const token = BEARER.exec(req.headers.authorization ?? '')?.[1];
  if (!token || token.length > TOKEN_MAX_LENGTH) {
    return refuse(401, 'a node token is required (Authorization: Bearer)', {
      'WWW-Authenticate': 'Bearer realm="ipcola-hub"',
    });
  }
  const helloText = req.headers[HELLO_HEADER];
  if (typeof helloText !== 'string') return refuse(400, `the ${HELLO_HEADER} header is missing`);
  const hello = parseHello(helloText);
  if (!hello.ok) return refuse(400, hello.reason);
  const instance = req.headers[AGENT_INSTANCE_HEADER];
  if (
    instance !== undefined &&
    !(typeof instance === 'string' && AGENT_INSTANCE_PATTERN.test(instance))
  ) {
    return refuse(400, `the ${AGENT_INSTANCE_HEADER} header must be 16-64 base64url characters`);
  }
  const heldWorkers = parseHeldWorkers(req.headers[HELD_WORKERS_HEADER]);
  return { ok: true, token, hello: hello.hello, instance, heldWorkers, protocol };
}

export function refusal(status: number, message: string, headers?: Record<string, string>) {
  return { status, message, ...(headers ? { headers } : {}) };
}

function refuse(status: number, message: string, headers?: Record<string, string>): UpgradeCheck {
  return { ok: false, refusal: refusal(status, message, headers) };
}

/** Answers with a refusal and closes: the request was not upgraded, so nothing else follows. */
export function writeRefusal(socket: Duplex, { status, message, headers }: Refusal): void {
  if (socket.destroyed) return;
  const body = `${message.replace(/[\r\n]+/g, ' ')}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers ?? {}).map(([name, value]) => `${name}: ${value}`),
  ];
  // Destroy once written: waiting for the agent's FIN would let a silent client hold it.
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}

/**
 * Writes the 101 and calls back once it is flushed. Node's HTTP/2 session must not take
 * over a socket with a write still in flight: over TLS that trips a native assertion
 * (node_http2.cc, OnStreamAfterWrite: is_write_in_progress()) and kills the process.
 */
export function writeSwitchingProtocols(
  socket: Duplex,
  protocol: TunnelProtocol,
  nodeId: string,
  proofNonce: string,
  worker: HubWorker | undefined,
  written: (error?: Error | null) => void,
): void {
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Connection: Upgrade',
    `Upgrade: ${upgradeTokenOf(protocol)}`,
    `${NODE_ID_HEADER}: ${nodeId}`,
    `${EXIT_PROOF_HEADER}: ${proofNonce}`,
    ...(worker ? [`${WORKER_HEADER}: ${formatWorker(worker)}`] : []),
  ];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`, written);
}
