/**
 * The agent's side of the tunnel: dial the hub, serve its CONNECT streams through
 * an egress function, reconnect, drain.
 */
export type { EgressTarget, OpenEgress } from './agent-session.ts';
export { type BackoffOptions, backoffDelay } from './backoff.ts';
export {
  type ConnectOptions,
  connectToHub,
  type ReconnectOptions,
  type TunnelClient,
  type TunnelClientEvents,
  type TunnelState,
} from './client.ts';
export { HubRefusedError } from './dial.ts';
