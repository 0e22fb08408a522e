/**
 * The tunnel protocol between the hub (server) and the exit-node agent: names, the node's
 * hello, target authorities, HTTP/2 tuning and heart-beats. Its siblings in this package
 * are the targeting vocabulary, the splice, the exit policy and the tunnel error codes.
 * Nothing in this package may import from the agent or from the server.
 */

export { type AbortNotice, deadline, deadlineOr, untilAborted } from './abort.ts';
export {
  formatAuthority,
  type HostPort,
  isValidHost,
  isValidPort,
  parseAuthority,
} from './authority.ts';
export {
  AGENT_INSTANCE_HEADER,
  AGENT_INSTANCE_PATTERN,
  ERROR_HEADER,
  EXIT_IP_HEADER,
  EXIT_PROOF_HEADER,
  EXIT_PROOF_PATH,
  HELLO_HEADER,
  NODE_ID_HEADER,
  REPLACED_STATUS,
  STREAM_LABEL_HEADER,
  STREAM_LABEL_MAX_LENGTH,
  TUNNEL_MUX_UPGRADE_TOKEN,
  TUNNEL_PATH,
  TUNNEL_UPGRADE_OFFER,
  TUNNEL_UPGRADE_TOKEN,
  type TunnelProtocol,
  tunnelProtocolOf,
  upgradeTokenOf,
} from './constants.ts';
export {
  type Heartbeat,
  type HeartbeatOptions,
  type Pingable,
  PingTimeoutError,
  startHeartbeat,
} from './heartbeat.ts';
export {
  canonicalIp,
  encodeHello,
  HELLO_MAX_EXIT_IPS,
  HELLO_MAX_LENGTH,
  HELLO_MAX_STREAMS,
  type HelloResult,
  type NodeHello,
  parseHello,
  validateHello,
} from './hello.ts';
export { silentLogger, type TunnelLogger } from './logger.ts';
export {
  CONNECT_ATTEMPT_TIMEOUT_MS,
  CONNECT_TIMEOUT_MS,
  GATEWAY_OPEN_TIMEOUT_MS,
  HUB_OPEN_TIMEOUT_MS,
} from './timeouts.ts';
export {
  CONNECTION_WINDOW_BYTES,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PING_TIMEOUT_MS,
  MAX_SESSION_MEMORY_MB,
  STREAM_WINDOW_BYTES,
  tunnelSettings,
  widenConnectionWindow,
} from './tuning.ts';
export {
  formatHeldWorkers,
  formatWorker,
  HELD_WORKER_STATUS,
  HELD_WORKERS_HEADER,
  type HubWorker,
  MAX_WORKERS,
  parseHeldWorkers,
  parseWorker,
  WORKER_HEADER,
} from './workers.ts';
