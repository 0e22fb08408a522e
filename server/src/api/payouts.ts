/**
 * /v1/payouts: operators paid through Stripe Connect. GET and POST /v1/payouts/account
 * (the linked account, what is payable; a Stripe onboarding link), GET and POST
 * /v1/payouts (the list; a payout). billing_disabled until Stripe is configured.
 */

import type { components } from '@ipcola/openapi';
import express, { type RequestHandler, type Response, type Router } from 'express';
import { parseMoney } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { CardPayments, Payout } from '../payments/index.ts';
import type { ResourceRouterOptions } from './control.ts';
import { createdList } from './pages.ts';
import { jsonBody, moneyView, onlyMethods, optionalBody } from './requests.ts';

type Schemas = components['schemas'];

export interface PayoutsRouterOptions extends Pick<ResourceRouterOptions, 'bodies' | 'idempotent'> {
  payments: CardPayments | undefined;
  caller: RequestHandler;
  accountOf: (res: Response) => string;
}

export function payoutsRouter(options: PayoutsRouterOptions): Router {
  const { caller, idempotent, accountOf } = options;
  const enabled: RequestHandler = (_req, _res, next) =>
    next(options.payments ? undefined : ipcolaError('billing_disabled'));
  const payouts = () => (options.payments as CardPayments).payouts;
  const router = express.Router();

  router
    .route('/payouts/account')
    .get(caller, enabled, async (_req, res) => {
      const account = await payouts().account(accountOf(res));
      const { balance } = account;
      const money = (micro: number) => moneyView(balance.currency, micro);
      res.json({
        stripe_account_id: account.stripeAccountId,
        details_submitted: account.detailsSubmitted,
        payouts_enabled: account.payoutsEnabled,
        owed: money(balance.owedMicro),
        held: money(balance.heldMicro),
        available: money(balance.availableMicro),
        minimum: money(balance.minimumMicro),
        hold_days: balance.holdDays,
      } satisfies Schemas['PayoutAccount']);
    })
    .post(caller, enabled, jsonBody, idempotent, async (_req, res) => {
      const onboarding = await payouts().link(accountOf(res));
      res.status(201).json({
        stripe_account_id: onboarding.stripeAccountId,
        url: onboarding.url,
        expires_at: onboarding.expiresAt.toISOString(),
      } satisfies Schemas['PayoutOnboarding']);
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/payouts')
    .get(
      caller,
      enabled,
      createdList((accountId, listing) => payouts().list(accountId, listing), payoutView),
    )
    .post(caller, enabled, jsonBody, idempotent, async (req, res) => {
      const body = options.bodies.check('CreatePayoutRequest', optionalBody(req));
      let amount: number | undefined;
      if (body.amount !== undefined) {
        const parsed = parseMoney(body.amount);
        if (parsed === null || parsed <= 0) {
          throw ipcolaError('invalid_request', 'amount must be a decimal above zero');
        }
        amount = parsed;
      }
      const payout = await payouts().request(accountOf(res), amount);
      res.status(201).json(payoutView(payout));
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  return router;
}

function payoutView(payout: Payout): Schemas['Payout'] {
  return {
    id: payout.id,
    amount: moneyView(payout.currency, payout.amountMicro),
    status: payout.status,
    stripe_transfer_id: payout.stripeTransferId,
    reversed: moneyView(payout.currency, payout.reversedMicro),
    failure: payout.failure,
    created_at: payout.createdAt.toISOString(),
  };
}
