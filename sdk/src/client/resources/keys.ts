import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** API keys: proxy credentials and, with the `api` scope, bearer tokens for this API. */
export class Keys {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Makes a key; its `secret` is in this answer only. Without `scopes` it is `proxy` only. */
  create(body: Input<Schemas['CreateKeyRequest']> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/keys', { body: snakeKeys<Schemas['CreateKeyRequest']>(body), ...init }),
    );
  }

  /** The account's keys, oldest first (revoked ones are not listed). */
  list(query: Input<Query<'listKeys'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/keys', {
          params: { query: withCursor(snakeKeys<Query<'listKeys'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  get(id: string, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/keys/{id}', { params: { path: { id } }, ...init }),
    );
  }

  /** Renames, disables or changes limits; `null` removes a limit. */
  update(id: string, body: Input<Schemas['UpdateKeyRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.PATCH('/v1/keys/{id}', {
        params: { path: { id } },
        body: snakeKeys<Schemas['UpdateKeyRequest']>(body),
        ...init,
      }),
    );
  }

  /** A new secret (in this answer only); the old one stops working within a second. */
  rotate(id: string, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/keys/{id}/rotate', { params: { path: { id } }, ...init }),
    );
  }

  /** Revokes the key for good; the gateway refuses it within a second. */
  async revoke(id: string, options?: RequestOptions): Promise<void> {
    await this.#r.call(options, (init) =>
      this.#r.api.DELETE('/v1/keys/{id}', { params: { path: { id } }, ...init }),
    );
  }
}
