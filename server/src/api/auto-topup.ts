/**
 * GET and PUT /v1/billing/auto-topup: the account's auto top-up (threshold, amount, the
 * saved card, the last failure) and balance alert level. billing_disabled without Stripe.
 */
import type { components } from '@ipcola/openapi';
import express, { type RequestHandler, type Response, type Router } from 'express';
import {
  type AutoTopUpChanges,
  type AutoTopUpSettings,
  CHECKOUT_MAX_MICRO,
  checkoutAmount,
  formatMoney,
  parseMoney,
  readAutoTopUp,
  saveAutoTopUp,
} from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { CardPayments } from '../payments/index.ts';
import type { Queryable } from '../store/index.ts';
import type { ResourceRouterOptions } from './control.ts';
import { found, jsonBody, moneyView, onlyMethods, requiredBody } from './requests.ts';

type Schemas = components['schemas'];

export interface AutoTopUpRouterOptions extends Pick<ResourceRouterOptions, 'bodies'> {
  database: Queryable;
  payments: CardPayments | undefined;
  caller: RequestHandler;
  accountOf: (res: Response) => string;
}

export function autoTopUpRouter(options: AutoTopUpRouterOptions): Router {
  const { caller, payments, database } = options;
  const router = express.Router();
  const enabled: RequestHandler = (_req, _res, next) =>
    next(payments ? undefined : ipcolaError('billing_disabled'));
  router
    .route('/billing/auto-topup')
    .get(caller, enabled, async (_req, res) => {
      const settings = await readAutoTopUp(database, options.accountOf(res));
      res.json(autoTopUpView(found(settings, 'No such account')));
    })
    .put(caller, enabled, jsonBody, async (req, res) => {
      const body = options.bodies.check('AutoTopUpSettings', requiredBody(req));
      const accountId = options.accountOf(res);
      const current = found(await readAutoTopUp(database, accountId), 'No such account');
      await saveAutoTopUp(database, accountId, changesOf(body, current.currency));
      // Saving arms it again: a balance already below the threshold is topped up now.
      await (payments as CardPayments).autoTopUp.check([accountId]);
      res.json(autoTopUpView(found(await readAutoTopUp(database, accountId), 'No such account')));
    })
    .all(onlyMethods('GET', 'HEAD', 'PUT'));
  return router;
}

function level(text: string, what: string): number {
  const micro = parseMoney(text);
  if (micro === null || micro > CHECKOUT_MAX_MICRO) {
    throw ipcolaError(
      'invalid_request',
      `${what} must be a decimal from 0.00 to ${formatMoney(CHECKOUT_MAX_MICRO)}`,
    );
  }
  return micro;
}

function changesOf(body: Schemas['AutoTopUpSettings'], currency: string): AutoTopUpChanges {
  return {
    ...(body.enabled === undefined ? {} : { enabled: body.enabled }),
    ...(body.threshold === undefined ? {} : { thresholdMicro: level(body.threshold, 'threshold') }),
    ...(body.amount === undefined
      ? {}
      : { amountMicro: checkoutAmount({ amount: body.amount }, currency) }),
    ...(body.low_balance_threshold === undefined
      ? {}
      : { lowBalanceMicro: level(body.low_balance_threshold, 'low_balance_threshold') }),
  };
}

export function autoTopUpView(settings: AutoTopUpSettings): Schemas['AutoTopUp'] {
  const { currency } = settings;
  return {
    enabled: settings.enabled,
    threshold: moneyView(currency, settings.thresholdMicro),
    amount: moneyView(currency, settings.amountMicro),
    low_balance_threshold: moneyView(currency, settings.lowBalanceMicro),
    payment_method: settings.paymentMethod,
    last_failure: settings.lastFailure && {
      at: settings.lastFailure.at.toISOString(),
      message: settings.lastFailure.message,
    },
  };
}
