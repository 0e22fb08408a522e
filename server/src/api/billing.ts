/**
 * GET /v1/billing (balance, what it buys per exit type, prices, the first page of the
 * statement), GET /v1/billing/ledger (further pages) and POST /v1/billing/checkout (a
 * Stripe Checkout page to buy credit; billing_disabled until Stripe is configured).
 */

import type { components } from '@ipcola/openapi';
import { EXIT_TYPES } from '@ipcola/shared/targeting';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Accounts } from '../accounts/index.ts';
import {
  BYTES_PER_GB,
  bytesFor,
  checkoutAmount,
  type PriceBook,
  readAutoTopUp,
  type StatementLine,
  type StatementPosition,
  statementLines,
} from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { CardPayments } from '../payments/index.ts';
import type { Queryable } from '../store/index.ts';
import { autoTopUpView } from './auto-topup.ts';
import type { ResourceRouterOptions } from './control.ts';
import { decodeKeyCursor, encodeKeyCursor } from './cursor.ts';
import { idempotencyKeyOf } from './idempotency.ts';
import { pageOf, pageRequest } from './pages.ts';
import { found, jsonBody, moneyView, onlyMethods, requiredBody } from './requests.ts';

type Schemas = components['schemas'];

const LEDGER_LIMIT = 50;

export interface BillingOptions extends Pick<ResourceRouterOptions, 'bodies' | 'idempotent'> {
  accounts: Pick<Accounts, 'getAccount'>;
  database: Queryable;
  prices: PriceBook;
  /** Card payments through Stripe; without them checkout answers billing_disabled. */
  payments: CardPayments | undefined;
  caller: RequestHandler;
  accountOf: (res: Response) => string;
}

export function billingRouter(options: BillingOptions): Router {
  const { caller, payments } = options;
  const router = express.Router();
  router.route('/billing').get(caller, billingSummary(options)).all(onlyMethods('GET', 'HEAD'));
  router
    .route('/billing/ledger')
    .get(caller, async (req, res) => {
      res.json(await ledgerPage(options, req, options.accountOf(res)));
    })
    .all(onlyMethods('GET', 'HEAD'));
  router
    .route('/billing/checkout')
    .post(
      caller,
      (_req, _res, next) => next(payments ? undefined : ipcolaError('billing_disabled')),
      jsonBody,
      options.idempotent,
      async (req, res) => {
        const body = options.bodies.check('CreateCheckoutRequest', requiredBody(req));
        const accountId = options.accountOf(res);
        const account = found(await options.accounts.getAccount(accountId), 'No such account');
        const amountMicro = checkoutAmount(body, account.currency);
        const key = idempotencyKeyOf(req);
        const session = await (payments as CardPayments).checkout({
          accountId,
          currency: account.currency,
          amountMicro,
          ...(key === undefined ? {} : { idempotencyKey: key }),
        });
        res.status(201).json({
          id: session.id,
          url: session.url,
          amount: moneyView(account.currency, amountMicro),
        } satisfies Schemas['CheckoutSession']);
      },
    )
    .all(onlyMethods('POST'));
  return router;
}

function billingSummary(options: BillingOptions): RequestHandler {
  return async (req, res) => {
    const accountId = options.accountOf(res);
    const account = found(await options.accounts.getAccount(accountId), 'No such account');
    const { prices } = options;
    const inForce = prices.inForce();
    res.json({
      balance: moneyView(account.currency, account.balanceMicro),
      earnings_owed: moneyView(account.currency, account.payableMicro),
      buys: EXIT_TYPES.map((type) => {
        const bytes = bytesFor(account.balanceMicro, prices.customerRate(type));
        return { exit_type: type, bytes, gb: (bytes / BYTES_PER_GB).toFixed(3) };
      }),
      prices: inForce.map((price) => ({
        exit_type: price.exitType,
        country: price.country || null,
        per_gb: moneyView(prices.currency, price.customerMicroPerGb),
        since: price.effectiveFrom.toISOString(),
      })),
      card_payments: options.payments !== undefined,
      auto_topup: await autoTopUpOf(options, accountId),
      ledger: await ledgerPage(options, req, accountId),
    } satisfies Schemas['Billing']);
  };
}

async function autoTopUpOf(
  options: BillingOptions,
  accountId: string,
): Promise<Schemas['AutoTopUp'] | null> {
  if (!options.payments) return null;
  const settings = await readAutoTopUp(options.database, accountId);
  return settings && autoTopUpView(settings);
}

async function ledgerPage(
  options: BillingOptions,
  req: Request,
  accountId: string,
): Promise<Schemas['LedgerPage']> {
  const { limit, cursor } = pageRequest(req, LEDGER_LIMIT);
  const before = cursor === undefined ? undefined : decodePosition(cursor);
  const lines = await statementLines(options.database, accountId, {
    ...(before ? { before } : {}),
    limit: limit + 1,
  });
  const page = pageOf(lines, limit, (last) => encodeKeyCursor([String(last.entryId), last.book]));
  return { items: page.items.map(lineView), next_cursor: page.nextCursor };
}

function decodePosition(cursor: string): StatementPosition {
  const [entryId, book] = decodeKeyCursor(cursor, 2);
  const id = Number(entryId);
  if (!Number.isSafeInteger(id) || (book !== 'balance' && book !== 'earnings')) {
    throw ipcolaError('invalid_request', 'cursor is not one this server gave out');
  }
  return { entryId: id, book };
}

function lineView(line: StatementLine): Schemas['LedgerLine'] {
  return {
    id: String(line.entryId),
    kind: line.kind,
    book: line.book,
    amount: moneyView(line.currency, line.amountMicro),
    memo: line.memo,
    receipt_url: line.receiptUrl,
    created_at: line.createdAt.toISOString(),
  };
}
