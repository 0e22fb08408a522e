/**
 * POST /v1/billing/stripe-webhook: Stripe's deliveries. Mounted ahead of the control API's
 * sessions, CSRF check and JSON parsing: Stripe signs the exact bytes it sends, so the body
 * is kept raw until the signature is checked, and Stripe has no session to show.
 */
import express, { type Router } from 'express';
import { ipcolaError } from '../errors/index.ts';
import type { CardPayments } from '../payments/index.ts';
import { onlyMethods } from './requests.ts';

export const STRIPE_WEBHOOK_PATH = '/billing/stripe-webhook';

/** Stripe's events are a few KiB; a checkout session with many line items stays far below this. */
const RAW_BODY_LIMIT = '1mb';

export function stripeWebhookRouter(payments: CardPayments | undefined): Router {
  const router = express.Router();
  router
    .route(STRIPE_WEBHOOK_PATH)
    .post(
      (_req, _res, next) => next(payments ? undefined : ipcolaError('billing_disabled')),
      // Whatever its content type: the signature, not the header, says what it is.
      express.raw({ type: () => true, limit: RAW_BODY_LIMIT }),
      async (req, res) => {
        const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const signature = req.headers['stripe-signature'];
        const outcome = await (payments as CardPayments).receive(
          raw,
          typeof signature === 'string' ? signature : undefined,
        );
        req.log?.info({ outcome }, 'stripe event');
        res.json({ received: true });
      },
    )
    .all(onlyMethods('POST'));
  return router;
}
