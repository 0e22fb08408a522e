import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Schemas } from '../types.ts';

type ProxyListRequest = Schemas['CreateProxyListRequest'];
/** Generated as required because the document gives them defaults; the server fills them in. */
type Defaulted = 'count' | 'sticky' | 'format';
export type CreateProxyListParams = Omit<ProxyListRequest, Defaulted> &
  Partial<Pick<ProxyListRequest, Defaulted>>;

/** Ready proxy strings to paste into a scraping tool. */
export class ProxyLists {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  /** `count` lines (default 10); sticky lists (the default) give each line its own session. */
  create(body: Input<CreateProxyListParams> = {}, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/proxy-lists', { body: snakeKeys<ProxyListRequest>(body), ...init }),
    );
  }
}
