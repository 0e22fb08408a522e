/** The list query for one page: the caller's filters, and the cursor when there is one. */
export function withCursor<Q extends object>(query: Q, cursor: string | undefined): Q {
  return cursor === undefined ? query : { ...query, cursor };
}
