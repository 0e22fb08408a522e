import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Where exits are online now (counts only). */
export class Regions {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  list(query: Input<Query<'listRegions'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/regions', {
          params: { query: withCursor(snakeKeys<Query<'listRegions'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }
}
