import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** The balance, prices, the statement, card top-ups and their automatic kind. */
export class Billing {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Balance, what it buys, prices, and the first statement page. */
  get(query: Input<Query<'getBilling'>> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/billing', {
        params: { query: snakeKeys<Query<'getBilling'>>(query) },
        ...init,
      }),
    );
  }

  /** Every movement of the balance and of node earnings, newest first. */
  ledger(query: Input<Query<'listLedger'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/billing/ledger', {
          params: { query: withCursor(snakeKeys<Query<'listLedger'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  /** A Stripe Checkout Session to buy credit; send the customer to its `url`. */
  createCheckout(body: Input<Schemas['CreateCheckoutRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/billing/checkout', {
        body: snakeKeys<Schemas['CreateCheckoutRequest']>(body),
        ...init,
      }),
    );
  }

  getAutoTopUp(options?: RequestOptions) {
    return this.#r.call(options, (init) => this.#r.api.GET('/v1/billing/auto-topup', { ...init }));
  }

  /** Fields left out keep their value. */
  setAutoTopUp(body: Input<Schemas['AutoTopUpSettings']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.PUT('/v1/billing/auto-topup', {
        body: snakeKeys<Schemas['AutoTopUpSettings']>(body),
        ...init,
      }),
    );
  }
}
