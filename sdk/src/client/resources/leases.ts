import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Sticky sessions pinned to one exit IP ahead of use. */
export class Leases {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Pins a session to an exit matching the targeting; `no_exit_available` when none does. */
  create(body: Input<Schemas['CreateLeaseRequest']> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/leases', {
        body: snakeKeys<Schemas['CreateLeaseRequest']>(body),
        ...init,
      }),
    );
  }

  /** Leases not released, oldest first; lapsed ones with `active` false. */
  list(query: Input<Query<'listLeases'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/leases', {
          params: { query: withCursor(snakeKeys<Query<'listLeases'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  get(id: string, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/leases/{id}', { params: { path: { id } }, ...init }),
    );
  }

  /** Keeps the lease another `ttl_seconds` (default its own). */
  renew(id: string, body: Input<Schemas['RenewLeaseRequest']> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/leases/{id}/renew', {
        params: { path: { id } },
        body: snakeKeys<Schemas['RenewLeaseRequest']>(body),
        ...init,
      }),
    );
  }

  /** Releases it now: the next connection with its username gets a fresh exit. */
  async release(id: string, options?: RequestOptions): Promise<void> {
    await this.#r.call(options, (init) =>
      this.#r.api.DELETE('/v1/leases/{id}', { params: { path: { id } }, ...init }),
    );
  }
}
