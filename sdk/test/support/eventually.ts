/** Polls a check until it passes (no fixed sleeps): the last failure is thrown at the deadline. */
import { setTimeout as sleep } from 'node:timers/promises';

export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** The server's log line for one request, by the id it answered in X-Request-Id. */
export function requestLogged(
  logs: Array<Record<string, unknown>>,
  requestId: string,
): Record<string, unknown> {
  const line = logs.find((entry) => (entry.req as { id?: string } | undefined)?.id === requestId);
  if (!line) throw new Error(`request ${requestId} is not in the server's log`);
  return line;
}
