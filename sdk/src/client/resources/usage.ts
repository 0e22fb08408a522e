import { PagedList } from '../pagination.ts';
import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Query } from '../types.ts';
import { withCursor } from './cursor.ts';

/** Metered traffic per key and hour or day. */
export class Usage {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** Usage rows of a range; each page also carries the `totals` of the whole range. */
  list(query: Input<Query<'getUsage'>> = {}, options?: RequestOptions) {
    return new PagedList((cursor) =>
      this.#r.call(options, (init) =>
        this.#r.api.GET('/v1/usage', {
          params: { query: withCursor(snakeKeys<Query<'getUsage'>>(query), cursor) },
          ...init,
        }),
      ),
    );
  }

  /** The same rows as CSV text, every row of the range at once. */
  exportCsv(query: Input<Query<'exportUsage'>> = {}, options?: RequestOptions): Promise<string> {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/v1/usage/export.csv', {
        params: { query: snakeKeys<Query<'exportUsage'>>(query) },
        parseAs: 'text',
        ...init,
      }),
    );
  }
}
