/**
 * GET /v1/usage and GET /v1/usage/export.csv: the caller's flushed usage by hour or day.
 */

import type { components } from '@ipcola/openapi';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { ipcolaError } from '../errors/index.ts';
import {
  type Granularity,
  ownsKey,
  readUsage,
  type UsageQuery,
  type UsageRow,
  usageTotals,
} from '../metering/usage-report.ts';
import type { Queryable } from '../store/index.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { pageOf } from './pages.ts';
import { onlyMethods } from './requests.ts';

type Schemas = components['schemas'];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The longest range one answer covers, so that no answer is unbounded. */
const MAX_SPAN_MS: Record<Granularity, number> = { hour: 31 * DAY_MS, day: 366 * DAY_MS };
const DEFAULT_LIMIT = 1000;

export interface UsageOptions {
  database: Queryable;
  caller: RequestHandler;
  accountOf: (res: Response) => string;
  /** Connections open now through this server, per key in use (the gateway's count). */
  openConnections: () => ReadonlyMap<string, number>;
}

export function usageRouter(options: UsageOptions): Router {
  const { database, caller, accountOf } = options;
  const router = express.Router();
  router
    .route('/usage')
    .get(caller, usageReport(database, accountOf, options.openConnections))
    .all(onlyMethods('GET', 'HEAD'));
  router
    .route('/usage/export.csv')
    .get(caller, usageCsv(database, accountOf))
    .all(onlyMethods('GET', 'HEAD'));
  return router;
}

function usageReport(
  db: Queryable,
  accountOf: (res: Response) => string,
  openConnections: () => ReadonlyMap<string, number>,
): RequestHandler {
  return async (req, res) => {
    const query = await readQuery(db, req, accountOf(res));
    const open = await openNow(db, query, openConnections());
    const limit = query.limit ?? DEFAULT_LIMIT;
    // One row more than the page tells whether another page follows.
    const rows = await readUsage(db, { ...query, limit: limit + 1 });
    const page = pageOf(rows, limit, (last) =>
      encodeCursor({ at: last.periodStart, id: last.keyId }),
    );
    const totals = await usageTotals(db, query);
    res.json({
      from: query.from.toISOString(),
      to: query.to.toISOString(),
      granularity: query.granularity,
      items: page.items.map(rowView),
      totals: {
        bytes_up: totals.bytesUp,
        bytes_down: totals.bytesDown,
        requests: totals.requests,
      },
      open_connections: open,
      next_cursor: page.nextCursor,
    } satisfies Schemas['UsageReport']);
  };
}

/** The account's keys (or the one asked for) among those with connections open now. */
async function openNow(
  db: Queryable,
  query: UsageQuery,
  open: ReadonlyMap<string, number>,
): Promise<Schemas['OpenConnections']> {
  const inUse = [...open.keys()].filter((keyId) => !query.keyId || keyId === query.keyId);
  const owned =
    inUse.length === 0
      ? []
      : await db.query<{ id: string }>(
          'SELECT id FROM api_keys WHERE account_id = $1 AND id = ANY($2::text[]) ORDER BY id',
          [query.accountId, inUse],
        );
  const byKey = owned.map(({ id }) => ({ key_id: id, open: open.get(id) ?? 0 }));
  return { total: byKey.reduce((sum, key) => sum + key.open, 0), by_key: byKey };
}

function usageCsv(db: Queryable, accountOf: (res: Response) => string): RequestHandler {
  return async (req, res) => {
    const query = await readQuery(db, req, accountOf(res));
    const rows = await readUsage(db, query);
    const lines = ['period_start,key_id,key_name,bytes_up,bytes_down,requests'];
    for (const row of rows) {
      lines.push(
        [
          row.periodStart.toISOString(),
          csvField(row.keyId),
          csvField(row.keyName),
          row.bytesUp,
          row.bytesDown,
          row.requests,
        ].join(','),
      );
    }
    res.setHeader('Content-Type', 'text/csv; charset=utf-8; header=present');
    res.setHeader('Content-Disposition', 'attachment; filename="ipcola-usage.csv"');
    res.send(`${lines.join('\r\n')}\r\n`);
  };
}

function rowView(row: UsageRow): Schemas['UsageRow'] {
  return {
    period_start: row.periodStart.toISOString(),
    key_id: row.keyId,
    key_name: row.keyName,
    bytes_up: row.bytesUp,
    bytes_down: row.bytesDown,
    requests: row.requests,
  };
}

async function readQuery(db: Queryable, req: Request, accountId: string): Promise<UsageQuery> {
  // The parameters' names, types, ranges and forms were checked against the document
  // (parameters.ts); what is left is what the document cannot say.
  const granularity: Granularity = single(req, 'granularity') === 'day' ? 'day' : 'hour';
  const period = granularity === 'day' ? DAY_MS : HOUR_MS;
  const toText = single(req, 'to');
  const to = toText === undefined ? new Date() : new Date(toText);
  const fromText = single(req, 'from');
  const from = fromText === undefined ? new Date(to.getTime() - DAY_MS) : new Date(fromText);
  // Periods are whole UTC hours or days: the range starts at the start of its first one.
  const start = new Date(Math.floor(from.getTime() / period) * period);
  if (!(start < to)) throw invalid('from must be before to');
  if (to.getTime() - start.getTime() > MAX_SPAN_MS[granularity]) {
    throw invalid(
      `one answer covers at most ${granularity === 'hour' ? 31 : 366} days by ${granularity}`,
    );
  }
  const query: UsageQuery = { accountId, from: start, to, granularity };
  const keyId = single(req, 'key_id');
  if (keyId !== undefined) {
    if (!(await ownsKey(db, accountId, keyId))) {
      throw ipcolaError('not_found', 'No such key');
    }
    query.keyId = keyId;
  }
  const country = single(req, 'country');
  if (country !== undefined) query.country = country.toLowerCase();
  const limitText = single(req, 'limit');
  if (limitText !== undefined) query.limit = Number(limitText);
  const cursor = single(req, 'cursor');
  if (cursor !== undefined) {
    const position = decodeCursor(cursor);
    query.after = { periodStart: position.at, keyId: position.id };
  }
  return query;
}

function single(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`${name} must be given once`);
  return value;
}

/** RFC 4180 quoting; a leading formula character is defused for spreadsheets. */
function csvField(text: string): string {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

function invalid(message: string) {
  return ipcolaError('invalid_request', message);
}
