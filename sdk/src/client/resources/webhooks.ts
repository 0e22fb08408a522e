import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Endpoints the account's billing events are POSTed to, signed, and their deliveries. */
export class Webhooks {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Registers an endpoint; its signing `secret` is in this answer only. */
  create(body: Input<Schemas['CreateWebhookRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/webhooks', {
        body: snakeKeys<Schemas['CreateWebhookRequest']>(body),
        ...init,
      }),
    );
  }

  list(query: Input<Query<'listWebhooks'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/webhooks', {
          params: { query: withCursor(snakeKeys<Query<'listWebhooks'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  get(id: string, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/webhooks/{id}', { params: { path: { id } }, ...init }),
    );
  }

  update(id: string, body: Input<Schemas['UpdateWebhookRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.PATCH('/v1/webhooks/{id}', {
        params: { path: { id } },
        body: snakeKeys<Schemas['UpdateWebhookRequest']>(body),
        ...init,
      }),
    );
  }

  async delete(id: string, options?: RequestOptions): Promise<void> {
    await this.#r.call(options, (init) =>
      this.#r.api.DELETE('/v1/webhooks/{id}', { params: { path: { id } }, ...init }),
    );
  }

  /** The endpoint's deliveries, newest first, each with its attempts. */
  deliveries(
    id: string,
    query: Input<Query<'listWebhookDeliveries'>> = {},
    options?: RequestOptions,
  ) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/webhooks/{id}/deliveries', {
          params: {
            path: { id },
            query: withCursor(snakeKeys<Query<'listWebhookDeliveries'>>(query), cursor),
          },
          ...init,
        }),
      ),
    );
  }

  /** Sends a `webhook.test` event now; the answer is the delivery, not yet attempted. */
  test(id: string, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/webhooks/{id}/test', { params: { path: { id } }, ...init }),
    );
  }
}
