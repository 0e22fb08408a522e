/**
 * What a customer may buy with a card: a pack, or an amount of their choosing within
 * limits (in the account's currency). Checkout turns the choice into micro-units here and
 * into Stripe's amount units (payments/checkout.ts).
 */
import { ipcolaError } from '../errors/index.ts';
import { formatMoney, MICRO_PER_UNIT, parseMoney, stripeAmountStep } from './money.ts';

/** Packs of credit, in units of the account's currency. */
export const CREDIT_PACKS = {
  starter: 10 * MICRO_PER_UNIT,
  growth: 50 * MICRO_PER_UNIT,
  scale: 200 * MICRO_PER_UNIT,
} as const;

export type CreditPack = keyof typeof CREDIT_PACKS;

/** The least and most one checkout buys: card fees make less pointless, more is a wire's job. */
export const CHECKOUT_MIN_MICRO = 5 * MICRO_PER_UNIT;
export const CHECKOUT_MAX_MICRO = 10_000 * MICRO_PER_UNIT;

/** The micro-units a checkout request buys: a pack's, or `amount` when it is in bounds and whole Stripe units. */
export function checkoutAmount(
  request: { amount?: string; pack?: CreditPack },
  currency: string,
): number {
  if (request.pack !== undefined) {
    if (request.amount !== undefined) {
      throw ipcolaError('invalid_request', 'Give either amount or pack, not both');
    }
    return CREDIT_PACKS[request.pack];
  }
  if (request.amount === undefined) {
    throw ipcolaError('invalid_request', 'Give amount (e.g. "25.00") or pack');
  }
  const micro = parseMoney(request.amount);
  const step = stripeAmountStep(currency);
  if (micro === null || micro % step !== 0) {
    const places = step === MICRO_PER_UNIT ? 'no decimals' : 'at most two decimals';
    throw ipcolaError('invalid_request', `amount must be a decimal with ${places}`);
  }
  if (micro < CHECKOUT_MIN_MICRO || micro > CHECKOUT_MAX_MICRO) {
    throw ipcolaError(
      'invalid_request',
      `amount must be from ${formatMoney(CHECKOUT_MIN_MICRO)} to ${formatMoney(CHECKOUT_MAX_MICRO)}`,
    );
  }
  return micro;
}
