import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query, Schemas } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Exit nodes the account operates, and what they earn it. */
export class Nodes {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Registers a node; its token is in this answer only. */
  create(body: Input<Schemas['CreateNodeRequest']> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/nodes', {
        body: snakeKeys<Schemas['CreateNodeRequest']>(body),
        ...init,
      }),
    );
  }

  /** The account's nodes, online or not, oldest first. */
  list(query: Input<Query<'listNodes'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/nodes', {
          params: { query: withCursor(snakeKeys<Query<'listNodes'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  /** What one node carried and earned per UTC day (default the last 30 days). */
  earnings(id: string, query: Input<Query<'getNodeEarnings'>> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/nodes/{id}/earnings', {
        params: { path: { id }, query: snakeKeys<Query<'getNodeEarnings'>>(query) },
        ...init,
      }),
    );
  }

  async delete(id: string, options?: RequestOptions): Promise<void> {
    await this.#r.call(options, (init) =>
      this.#r.api.DELETE('/v1/nodes/{id}', { params: { path: { id } }, ...init }),
    );
  }
}
