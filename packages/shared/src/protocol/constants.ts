/**
 * Names both ends of the tunnel must agree on. Header names are lowercase because
 * HTTP/2 requires it and Node lowercases HTTP/1.1 header names on read.
 */

/** The HTTP/1.1 path the agent sends its Upgrade request to. */
export const TUNNEL_PATH = '/v1/tunnel';

/**
 * The Upgrade tokens, one per tunnel protocol. The version lives here rather than in a
 * header so that a hub that speaks none of an agent's versions refuses with 426 before
 * anything else. An agent offers every version it speaks, newest first; the hub answers
 * with the newest it speaks too.
 *
 * v1 carries the streams over HTTP/2; v2 over the multiplexer in ../mux, which costs
 * the hub less per new stream. Agents in the field speak v1 until their operators
 * upgrade them, so hubs keep speaking it.
 */
export const TUNNEL_UPGRADE_TOKEN = 'ipcola-tunnel.v1';
export const TUNNEL_MUX_UPGRADE_TOKEN = 'ipcola-tunnel.v2';

/** Which protocol a tunnel speaks after the 101: 'h2' (v1) or 'mux' (v2). */
export type TunnelProtocol = 'h2' | 'mux';

/** Every version this code speaks, newest first, as an Upgrade header lists them. */
export const TUNNEL_UPGRADE_OFFER = `${TUNNEL_MUX_UPGRADE_TOKEN}, ${TUNNEL_UPGRADE_TOKEN}`;

/** The protocol an Upgrade token names; undefined for a token this code does not speak. */
export function tunnelProtocolOf(token: string): TunnelProtocol | undefined {
  if (token === TUNNEL_MUX_UPGRADE_TOKEN) return 'mux';
  if (token === TUNNEL_UPGRADE_TOKEN) return 'h2';
  return undefined;
}

/** The Upgrade token of a protocol. */
export function upgradeTokenOf(protocol: TunnelProtocol): string {
  return protocol === 'mux' ? TUNNEL_MUX_UPGRADE_TOKEN : TUNNEL_UPGRADE_TOKEN;
}

/** Upgrade request: the node's hello, as JSON (see hello.ts). */
export const HELLO_HEADER = 'x-ipcola-hello';

/**
 * Upgrade request: a random id the agent process draws once at start. It tells the hub
 * a reconnection of the same agent (which simply takes over its stale connection) from
 * another agent presenting the same token (which replaces it for good: see the hub).
 */
export const AGENT_INSTANCE_HEADER = 'x-ipcola-agent-instance';

/** What an agent instance id looks like: 16 to 64 base64url characters. */
export const AGENT_INSTANCE_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * Upgrade refusal status for an agent that another agent with the same token replaced:
 * it must stop, not dial again.
 */
export const REPLACED_STATUS = 409;

/** 101 response: the node id the hub authenticated the token as, for the agent's logs. */
export const NODE_ID_HEADER = 'x-ipcola-node-id';

/**
 * 101 response: a one-time nonce with which the agent proves each exit IP it announced,
 * by a POST to EXIT_PROOF_PATH made from that address (EXIT_IP_HEADER names it). Only
 * addresses the hub sees so carry traffic.
 */
export const EXIT_PROOF_HEADER = 'x-ipcola-exit-proof';

/** Where exit IPs are proved, on the hub's port. */
export const EXIT_PROOF_PATH = '/v1/tunnel/exit-proof';

/** CONNECT stream request: the exit IP the agent must bind the egress connection to. */
export const EXIT_IP_HEADER = 'x-ipcola-exit-ip';

/** CONNECT stream request: an opaque label (request id) that both ends put in their logs. */
export const STREAM_LABEL_HEADER = 'x-ipcola-stream';

/** CONNECT stream response: the tunnel error code when the status is not 200. */
export const ERROR_HEADER = 'x-ipcola-error';

/** Longest stream label accepted, in characters. */
export const STREAM_LABEL_MAX_LENGTH = 128;
