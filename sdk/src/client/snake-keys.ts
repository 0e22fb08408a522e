/** `{ ttlSeconds: 60 }` as the API names it, `{ ttl_seconds: 60 }`; top-level keys only. */
export function snakeKeys<T>(input: object): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    out[key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)] = value;
  }
  return out as T;
}
