/**
 * Keyset cursors for list answers: the sort position (a time and an id) of the last item
 * handed out, opaque to clients. A cursor that does not decode is refused, never guessed at.
 */
import { ipcolaError } from '../errors/index.ts';

export interface Position {
  at: Date;
  id: string;
}

export function encodeCursor(position: Position): string {
  return Buffer.from(JSON.stringify([position.at.toISOString(), position.id])).toString(
    'base64url',
  );
}

export function decodeCursor(cursor: string): Position {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    const date = new Date(String(at));
    if (typeof id === 'string' && !Number.isNaN(date.getTime())) return { at: date, id };
  } catch {
    // refused below
  }
  throw ipcolaError('invalid_request', 'cursor is not one this API handed out');
}

/**
 * A cursor for lists ordered by text fields rather than by time: the sort key of the last
 * item handed out. `fields` is how many the key has; null stands for a missing value.
 */
export function encodeKeyCursor(key: readonly (string | null)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeKeyCursor(cursor: string, fields: number): (string | null)[] {
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(key) &&
      key.length === fields &&
      key.every((part) => part === null || typeof part === 'string')
    ) {
      return key as (string | null)[];
    }
  } catch {
    // refused below
  }
  throw ipcolaError('invalid_request', 'cursor is not one this API handed out');
}
