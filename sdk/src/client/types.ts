/** Shorthands over the generated API types; nothing here restates a schema. */
import type { components, operations } from '@ipcola/openapi';

export type Schemas = components['schemas'];
export type Query<Op extends keyof operations> = NonNullable<operations[Op]['parameters']['query']>;

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

/** The same fields with camelCase names (`ttl_seconds` as `ttlSeconds`). */
export type CamelKeys<T> = { [K in keyof T as K extends string ? CamelCase<K> : K]: T[K] };

/**
 * What a method takes: the API's own snake_case fields, or the same in camelCase as is
 * usual in TypeScript; sent as snake_case either way (see `snakeKeys`).
 */
export type Input<T> = T | CamelKeys<T>;
