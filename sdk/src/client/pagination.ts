/**
 * Every list of the API answers `{ items, next_cursor }`. A `PagedList` is both the first
 * page (`await ipc.keys.list()`) and every item of every page (`for await (const key of
 * ipc.keys.list())`), asking for the next page only when the one before is used up.
 */

export interface CursorPage<Item> {
  items: Item[];
  next_cursor: string | null;
}

export type ItemOf<Page> = Page extends CursorPage<infer Item> ? Item : never;

export class PagedList<Page extends CursorPage<unknown>>
  implements AsyncIterable<ItemOf<Page>>, PromiseLike<Page>
{
  readonly #fetchPage: (cursor: string | undefined) => Promise<Page>;
  readonly #startCursor: string | undefined;
  #first: Promise<Page> | undefined;

  constructor(fetchPage: (cursor: string | undefined) => Promise<Page>, startCursor?: string) {
    this.#fetchPage = fetchPage;
    this.#startCursor = startCursor;
  }

  /** One page: the first, or the one a `next_cursor` points at. */
  page(cursor?: string): Promise<Page> {
    if (cursor !== undefined) return this.#fetchPage(cursor);
    this.#first ??= this.#fetchPage(this.#startCursor);
    return this.#first;
  }

  /** Every page in turn, following `next_cursor` until it is null. */
  async *pages(): AsyncGenerator<Page, void, undefined> {
    let page = await this.page();
    for (;;) {
      yield page;
      if (page.next_cursor === null) return;
      page = await this.#fetchPage(page.next_cursor);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ItemOf<Page>, void, undefined> {
    for await (const page of this.pages()) yield* page.items as ItemOf<Page>[];
  }

  /** Every item of every page in one array; `max` stops early. */
  async toArray(max = Number.POSITIVE_INFINITY): Promise<ItemOf<Page>[]> {
    const all: ItemOf<Page>[] = [];
    if (max <= 0) return all;
    for await (const item of this) {
      all.push(item);
      if (all.length >= max) break;
    }
    return all;
  }

  // biome-ignore lint/suspicious/noThenProperty: awaiting a list gives its first page, as in the OpenAI SDK.
  then<R1 = Page, R2 = never>(
    onfulfilled?: ((page: Page) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.page().then(onfulfilled, onrejected);
  }
}
