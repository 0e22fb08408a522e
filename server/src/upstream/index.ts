/**
 * Upstream-proxy exits (README, "Upstream-proxy exits"): a datacenter supplier's existing SOCKS5 or
 * HTTP proxy registered as an exit node instead of running the agent. The gateway
 * chains through it, enforcing the exit policy (@ipcola/shared) itself.
 *
 * - registry: the nodes in the database (credentials sealed, see credential-box);
 * - upstream-dialer: one stream through a proxy to a policy-checked target address;
 * - upstream-exits: the nodes this gateway uses, their health, and opening streams;
 * - upstreams: the registry and the exits, as the server opens them.
 */
export {
  CREDENTIALS_KEY_SETTING,
  type CredentialBox,
  createCredentialBox,
  loadCredentialBox,
} from './credential-box.ts';
export { describeProxy, type UpstreamProxy } from './proxy-url.ts';
export {
  createUpstreamRegistry,
  type DeclaredLocation,
  type RegisteredUpstreamNode,
  type UpstreamNode,
  type UpstreamRegistration,
  type UpstreamRegistry,
} from './registry.ts';
export { createUpstreamDialer, type UpstreamDialer } from './upstream-dialer.ts';
export {
  createUpstreamExits,
  type UpstreamExits,
  type UpstreamExitsEvents,
} from './upstream-exits.ts';
export { openUpstreams, type UpstreamsOptions } from './upstreams.ts';
