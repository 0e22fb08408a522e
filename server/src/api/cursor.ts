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
