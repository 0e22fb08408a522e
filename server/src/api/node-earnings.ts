/**
 * GET /v1/nodes/{id}/earnings: what one of the caller's nodes carried and earned, per UTC
 * day, from the hourly usage rows (priced at the operator rate of each hour).
 */

import type { components } from '@ipcola/openapi';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Accounts } from '../accounts/index.ts';
import { nodeEarningsByDay, utcDay } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { Queryable } from '../store/index.ts';
import { found, idParam, moneyView, onlyMethods } from './requests.ts';

type Schemas = components['schemas'];

const DAY_MS = 86_400_000;
/** Days an answer covers by default, and at most. */
const DEFAULT_DAYS = 30;
const MAX_DAYS = 366;

export interface NodeEarningsOptions {
  accounts: Pick<Accounts, 'getAccount'>;
  database: Queryable;
  caller: RequestHandler;
  accountOf: (res: Response) => string;
}

export function nodeEarningsRouter(options: NodeEarningsOptions): Router {
  const router = express.Router();
  router
    .route('/nodes/:id/earnings')
    .get(options.caller, async (req, res) => {
      const accountId = options.accountOf(res);
      const range = dayRange(req);
      const nodeId = idParam(req);
      const days = found(
        await nodeEarningsByDay(options.database, accountId, nodeId, range),
        'No such node',
      );
      const account = found(await options.accounts.getAccount(accountId), 'No such account');
      const money = (micro: number) => moneyView(account.currency, micro);
      let bytes = 0;
      let earned = 0;
      for (const day of days) {
        bytes += day.bytes;
        earned += day.earnedMicro;
      }
      res.json({
        node_id: nodeId,
        from: range.from,
        to: range.to,
        days: days.map((day) => ({
          day: day.day,
          bytes: day.bytes,
          earnings: money(day.earnedMicro),
        })),
        total: { bytes, earnings: money(earned) },
      } satisfies Schemas['NodeEarnings']);
    })
    .all(onlyMethods('GET', 'HEAD'));
  return router;
}

/** `from` and `to` (their form was checked against the document): real days, in order, at most a year apart. */
function dayRange(req: Request): { from: string; to: string } {
  const to = day(req, 'to') ?? utcDay(new Date());
  const from = day(req, 'from') ?? utcDay(new Date(Date.parse(to) - (DEFAULT_DAYS - 1) * DAY_MS));
  const span = (Date.parse(to) - Date.parse(from)) / DAY_MS + 1;
  if (span < 1) throw ipcolaError('invalid_request', 'from must not be after to');
  if (span > MAX_DAYS) {
    throw ipcolaError('invalid_request', `one answer covers at most ${MAX_DAYS} days`);
  }
  return { from, to };
}

function day(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw ipcolaError('invalid_request', `${name} must be given once`);
  const at = new Date(`${value}T00:00:00Z`);
  // "2026-02-30" parses as a date in March: only a day that reads back the same is one.
  if (Number.isNaN(at.getTime()) || utcDay(at) !== value) {
    throw ipcolaError('invalid_request', `${name} is not a day (YYYY-MM-DD)`);
  }
  return value;
}
