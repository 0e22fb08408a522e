import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Operators' earnings paid out through Stripe Connect. */
export class Payouts {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  getAccount(options?: RequestOptions) {
    return this.#r.call(options, (init) => this.#r.api.GET('/v1/payouts/account', { ...init }));
  }

  /** Links (or resumes linking) a Stripe account; send the operator to the answer's URL. */
  linkAccount(options?: RequestOptions) {
    return this.#r.call(options, (init) => this.#r.api.POST('/v1/payouts/account', { ...init }));
  }

  list(query: Input<Query<'listPayouts'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/payouts', {
          params: { query: withCursor(snakeKeys<Query<'listPayouts'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  /** Pays `amount` (whole cents), or everything available without it. */
  create(body: Input<Schemas['CreatePayoutRequest']> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/payouts', {
        body: snakeKeys<Schemas['CreatePayoutRequest']>(body),
        ...init,
      }),
    );
  }
}
