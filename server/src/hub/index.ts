/**
 * The hub role: exit nodes dial in here (HUB_PORT) and the gateway opens streams
 * through them.
 */
export {
  createHub,
  type Hub,
  type HubEvents,
  type HubOptions,
  type NodeDownEvent,
  nodeHealthOptions,
  type ProofAnswer,
  type ProofClaim,
} from './hub.ts';
export type { ConnectedNode, NodeDownReason, StreamTarget } from './node-session.ts';
export { closeHubServer, createHubServer, type HubServerOptions, hubListener } from './server.ts';
