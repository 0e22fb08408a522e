/**
 * A store that did not answer (PostgreSQL or Redis down, unreachable, restarting), told
 * apart from a query that failed on its own merits. The engines' adapters wrap their
 * failures in it; the edges answer it as "a dependency is unavailable" (503 `not_ready` on
 * the API, `service_unavailable` on the proxy) instead of an internal error.
 */
export class StoreUnavailableError extends Error {
  constructor(
    readonly engine: 'postgres' | 'redis',
    cause: unknown,
  ) {
    super(`${engine} is unavailable: ${(cause as Error | undefined)?.message ?? String(cause)}`, {
      cause,
    });
    this.name = 'StoreUnavailableError';
  }
}

export function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return error instanceof StoreUnavailableError;
}

/** Socket-level failures of a connection to a store. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * SQLSTATEs of a server that is going away or not taking connections: class 08
 * (connection exception), admin/crash shutdown, cannot connect now, too many connections.
 */
const UNAVAILABLE_SQLSTATES = /^(08...|57P0[1-3]|53300)$/;

/**
 * node-postgres reports a lost or unobtainable connection with these messages and no
 * code (pg 8: Client and Pool); nothing else tells them apart from a bug.
 */
const PG_CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'is not queryable',
];

/** Whether a node-postgres failure means the server is unreachable (not a bad query). */
export function isPostgresConnectionFailure(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATES.test(code))) {
    return true;
  }
  if (error instanceof AggregateError) return error.errors.some(isPostgresConnectionFailure);
  return (
    typeof message === 'string' && PG_CONNECTION_MESSAGES.some((text) => message.includes(text))
  );
}
