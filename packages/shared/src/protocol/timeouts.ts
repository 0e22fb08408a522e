/**
 * How long each layer waits for a stream to open. They are written together because they
 * only work in this order, each longer than the one before:
 *
 * 1. CONNECT_TIMEOUT_MS: the agent (and the gateway's upstream dialer, which plays the
 *    agent's part for a supplier's proxy) gives up connecting to the target and answers
 *    target_timeout or target_unreachable, which says whose fault it was.
 * 2. HUB_OPEN_TIMEOUT_MS: the hub gives up on a node's answer. Longer than the agent's
 *    connect, so that a working agent always answers first; only a node that does not
 *    answer at all reaches it, and is counted against (the hub's stream health).
 * 3. GATEWAY_OPEN_TIMEOUT_MS: the gateway gives up on the whole open and cancels it
 *    below. Longer than the hub's, so that the silent node is counted against before
 *    the gateway's cancellation ends the hub's wait.
 */

/** Everything from resolving the target's name to the last connect attempt. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** One target address's share of CONNECT_TIMEOUT_MS when more addresses follow. */
export const CONNECT_ATTEMPT_TIMEOUT_MS = 4_000;

/** The hub's wait for a node's answer to a CONNECT stream. */
export const HUB_OPEN_TIMEOUT_MS = 15_000;

/** The gateway's wait for a stream through an exit, hub or upstream proxy alike. */
export const GATEWAY_OPEN_TIMEOUT_MS = 20_000;
