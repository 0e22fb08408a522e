/**
 * Keyset cursors for list answers: the sort key of the last item handed out, opaque to
 * clients. A cursor that does not decode is refused, never guessed at.
 */
import { ipcolaError } from '../errors/index.ts';

/** The sort position of lists ordered by time, then id. */
export interface Position {
  at: Date;
  id: string;
}

export function encodeCursor(position: Position): string {
  return encodeKeyCursor([position.at.toISOString(), position.id]);
}

export function decodeCursor(cursor: string): Position {
  const [at, id] = decodeKeyCursor(cursor, 2);
  const date = new Date(String(at));
  if (typeof id !== 'string' || Number.isNaN(date.getTime())) throw notOurs();
  return { at: date, id };
}

/**
 * A cursor for lists ordered by any fields: the sort key of the last item handed out.
 * `fields` is how many the key has; null stands for a missing value.
 */
export function encodeKeyCursor(key: readonly (string | null)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeKeyCursor(cursor: string, fields: number): (string | null)[] {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw notOurs();
  }
  if (
    !Array.isArray(key) ||
    key.length !== fields ||
    !key.every((part) => part === null || typeof part === 'string')
  ) {
    throw notOurs();
  }
  return key;
}

function notOurs() {
  return ipcolaError('invalid_request', 'cursor is not one this API handed out');
}
