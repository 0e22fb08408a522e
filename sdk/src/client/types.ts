/** Shorthands over the generated API types; nothing here restates a schema. */
import type { components, operations } from '@ipcola/openapi';

export type Schemas = components['schemas'];
export type Query<Op extends keyof operations> = NonNullable<operations[Op]['parameters']['query']>;
