/**
 * What `ipcola` exits with, so scripts can tell "fix the command" from "log in again" from
 * "try later". `ipcola curl` exits with curl's own code once curl runs.
 */
import { IPColaError } from '../errors.ts';

export const EXIT = {
  ok: 0,
  /** Anything not below: a bug, a file that cannot be written, curl missing. */
  failed: 1,
  /** Unknown command or option, a bad option value. */
  usage: 2,
  /** No key given or stored, or the API refused it (`unauthorized`, `forbidden`, ...). */
  auth: 3,
  /** The API refused the request itself (`not_found`, `invalid_request`, ...). */
  refused: 4,
  /** The API could not be reached, timed out, or failed (5xx) after the retries. */
  unavailable: 5,
} as const;

const AUTH_CODES = new Set(['unauthorized', 'forbidden', 'auth_required', 'auth_failed']);

/** Wrong use of the CLI, found before any request. */
export class UsageError extends Error {}

/** No key at all: nothing was asked of the API. */
export class NotLoggedInError extends Error {}

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof NotLoggedInError) return EXIT.auth;
  if (error instanceof IPColaError) {
    if (AUTH_CODES.has(error.code)) return EXIT.auth;
    if (error.code === 'connection_error' || error.code === 'timeout') return EXIT.unavailable;
    if (error.status !== undefined && error.status >= 500) return EXIT.unavailable;
    return EXIT.refused;
  }
  return EXIT.failed;
}
