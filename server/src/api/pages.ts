/**
 * Pages of list answers (keys, nodes, leases, usage, regions): at most `limit` items and
 * a keyset cursor after the last one, null on the last page. Every list reads one item
 * more than the page, which tells whether another page follows.
 */
import type { Request, RequestHandler } from 'express';
import { callerOf } from './auth.ts';
import { decodeCursor, encodeCursor, type Position } from './cursor.ts';

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** `rows`: up to `limit + 1` items from the cursor on; `cursorOf` gives the cursor after one. */
export function pageOf<T>(
  rows: readonly T[],
  limit: number,
  cursorOf: (last: T) => string,
): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined ? cursorOf(last) : null,
  };
}

/** The page a request asks for (`limit`, `cursor`, checked against the document by parameters.ts). */
export function pageRequest(
  req: Request,
  defaultLimit: number,
): { limit: number; cursor?: string } {
  const { limit, cursor } = req.query;
  return {
    limit: typeof limit === 'string' ? Number(limit) : defaultLimit,
    ...(typeof cursor === 'string' ? { cursor } : {}),
  };
}

export type Listing = { after?: { createdAt: Date; id: string }; limit: number };

/** The page size of lists by creation when the request names none (the document's default). */
const CREATED_LIMIT = 100;

/** One page of a list ordered by creation time and id. */
export async function createdPage<T extends { createdAt: Date; id: string }>(
  req: Request,
  load: (listing: Listing) => Promise<T[]>,
): Promise<Page<T>> {
  const { limit, cursor } = pageRequest(req, CREATED_LIMIT);
  const position = cursor === undefined ? undefined : decodeCursor(cursor);
  const rows = await load({
    ...(position ? { after: { createdAt: position.at, id: position.id } } : {}),
    limit: limit + 1,
  });
  return pageOf(rows, limit, (last) => encodeCursor(byCreation(last)));
}

function byCreation(item: { createdAt: Date; id: string }): Position {
  return { at: item.createdAt, id: item.id };
}

/** GET of a list by creation: the caller's page of items, each shown by `view`. */
export function createdList<T extends { createdAt: Date; id: string }, V>(
  load: (accountId: string, listing: Listing) => Promise<T[]>,
  view: (item: T) => V,
): RequestHandler {
  return async (req, res) => {
    const page = await createdPage(req, (listing) => load(callerOf(res).accountId, listing));
    res.json({ items: page.items.map(view), next_cursor: page.nextCursor });
  };
}
