import { createHash } from 'node:crypto';
import type { VerifiedNode } from './nodes.ts';

/** What the hub needs of a node whose token verified. */
export interface NodeIdentity {
  nodeId: string;
  type: VerifiedNode['type'];
}

/** At most this many tokens' last answers are kept (one per node that attached lately). */
const REMEMBERED_LIMIT = 100_000;

/**
 * The hub's authenticate() from a check of node tokens against the database, standing on
 * the database's last yes for a token while it cannot be asked, for at most graceMs after
 * that yes (OUTAGE_GRACE_MS: README, "When PostgreSQL or Redis is down"): an agent whose
 * connection drops during a PostgreSQL outage comes back and keeps carrying traffic. A
 * token never seen, or only refused, is not let in then (the hub answers 503 and the agent
 * retries). Tokens are remembered by their SHA-256, never as they are.
 */
export function nodeTokenCheck(
  verify: (token: string) => Promise<Pick<VerifiedNode, 'id' | 'type'> | null>,
  graceMs: number,
  now: () => number = Date.now,
): (token: string) => Promise<NodeIdentity | null> {
  const answers = new Map<string, { identity: NodeIdentity; at: number }>();
  return async (token) => {
    const digest = createHash('sha256').update(token).digest('base64url');
    let identity: NodeIdentity | null;
    try {
      const node = await verify(token);
      identity = node && { nodeId: node.id, type: node.type };
    } catch (error) {
      const last = answers.get(digest);
      if (last && now() - last.at <= graceMs) return last.identity;
      throw error;
    }
    answers.delete(digest);
    if (identity) {
      if (answers.size >= REMEMBERED_LIMIT) {
        const oldest = answers.keys().next();
        if (!oldest.done) answers.delete(oldest.value);
      }
      answers.set(digest, { identity, at: now() });
    }
    return identity;
  };
}
