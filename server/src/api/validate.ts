/**
 * Request bodies checked against the schemas of the OpenAPI document itself, so the
 * document stays the one source of truth: the generated types say what a handler
 * receives, and this makes it so. Only the JSON Schema keywords the document uses are
 * understood; an unknown keyword stops start-up instead of being silently ignored.
 */

import type { components } from '@ipcola/openapi';
import { ipcolaError } from '../errors/index.ts';
import {
  type Check,
  isPlainObject,
  type JsonSchema,
  join,
  pushArrayLengthChecks,
  pushNumberChecks,
  pushStringChecks,
  subject,
  typeCheck,
} from './schema-keywords.ts';

type Schemas = components['schemas'];

export interface BodyValidator {
  /** The value as the named schema's type; throws `invalid_request` naming the first bad field. */
  check<K extends keyof Schemas>(schema: K, value: unknown): Schemas[K];
  /** Checks a value against an inline schema of the document (a parameter's); the failure or null. */
  checkValue(schema: Record<string, unknown>, value: unknown, name: string): string | null;
}

const ANNOTATIONS = new Set([
  'description',
  'title',
  'examples',
  'example',
  'default',
  'deprecated',
]);
export function createBodyValidator(document: {
  components?: { schemas?: unknown };
}): BodyValidator {
  const definitions = (document.components?.schemas ?? {}) as Record<string, JsonSchema>;
  const compiled = new Map<string, Check>();

  const named = (name: string): Check => {
    let check = compiled.get(name);
    if (!check) {
      const schema = definitions[name];
      if (!schema) throw new Error(`the OpenAPI document has no schema ${name}`);
      // Set before compiling so that recursive references resolve lazily.
      let inner: Check | undefined;
      check = (value, path) => (inner as Check)(value, path);
      compiled.set(name, check);
      inner = compile(schema, name);
    }
    return check;
  };

  const compile = (schema: JsonSchema, where: string): Check => {
    const checks: Check[] = [];
    for (const keyword of Object.keys(schema)) {
      if (!KNOWN_KEYWORDS.has(keyword) && !ANNOTATIONS.has(keyword)) {
        throw new Error(
          `schema ${where}: the keyword ${keyword} is not supported by the validator`,
        );
      }
    }
    if (typeof schema.$ref === 'string') {
      const name = /^#\/components\/schemas\/([A-Za-z0-9_]+)$/.exec(schema.$ref)?.[1];
      if (!name) throw new Error(`schema ${where}: unsupported $ref ${schema.$ref}`);
      checks.push(named(name));
    }
    if (schema.type !== undefined) checks.push(typeCheck(schema.type));
    if (schema.enum !== undefined) {
      const allowed = schema.enum as unknown[];
      checks.push((value, path) =>
        allowed.includes(value) ? null : `${subject(path)} must be one of ${allowed.join(', ')}`,
      );
    }
    if (schema.const !== undefined) {
      checks.push((value, path) =>
        value === schema.const ? null : `${subject(path)} must be ${JSON.stringify(schema.const)}`,
      );
    }
    pushStringChecks(schema, where, checks);
    pushNumberChecks(schema, checks);
    pushObjectChecks(schema, where, checks);
    pushArrayLengthChecks(schema, checks);
    if (schema.items !== undefined) {
      const item = compile(schema.items as JsonSchema, `${where}.items`);
      checks.push((value, path) => {
        if (!Array.isArray(value)) return null;
        for (const [index, element] of value.entries()) {
          const failure = item(element, `${path}[${index}]`);
          if (failure) return failure;
        }
        return null;
      });
    }
    if (schema.oneOf !== undefined) {
      const options = (schema.oneOf as JsonSchema[]).map((option, i) =>
        compile(option, `${where}.oneOf[${i}]`),
      );
      checks.push((value, path) => {
        const failures = options.map((option) => option(value, path));
        const passed = failures.filter((failure) => failure === null).length;
        if (passed === 1) return null;
        return passed === 0
          ? failures.join('; or ')
          : `${subject(path)} matches more than one form`;
      });
    }
    return (value, path) => {
      for (const check of checks) {
        const failure = check(value, path);
        if (failure) return failure;
      }
      return null;
    };
  };

  const pushObjectChecks = (schema: JsonSchema, where: string, checks: Check[]) => {
    const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const propertyChecks = new Map(
      Object.entries(properties).map(([name, property]) => [
        name,
        compile(property, `${where}.${name}`),
      ]),
    );
    const required = (schema.required ?? []) as string[];
    const closed = schema.additionalProperties === false;
    if (
      schema.additionalProperties !== undefined &&
      typeof schema.additionalProperties !== 'boolean'
    ) {
      throw new Error(`schema ${where}: only a boolean additionalProperties is supported`);
    }
    if (propertyChecks.size === 0 && required.length === 0 && !closed) return;
    checks.push((value, path) => {
      if (!isPlainObject(value)) return null;
      for (const name of required) {
        if (!Object.hasOwn(value, name)) return `${join(path, name)} is required`;
      }
      for (const [name, field] of Object.entries(value)) {
        const check = propertyChecks.get(name);
        if (!check) {
          if (closed) return `unknown field ${JSON.stringify(join(path, name))}`;
          continue;
        }
        const failure = check(field, join(path, name));
        if (failure) return failure;
      }
      return null;
    });
  };

  // Compiling every schema now makes an unsupported keyword a start-up error.
  for (const name of Object.keys(definitions)) named(name);

  const inline = new WeakMap<JsonSchema, Check>();
  return {
    check<K extends keyof Schemas>(schema: K, value: unknown): Schemas[K] {
      const failure = named(schema as string)(value, '');
      if (failure) throw ipcolaError('invalid_request', failure);
      return value as Schemas[K];
    },
    checkValue(schema, value, name) {
      let check = inline.get(schema);
      if (!check) {
        check = compile(schema, name);
        inline.set(schema, check);
      }
      return check(value, name);
    },
  };
}

const KNOWN_KEYWORDS = new Set([
  '$ref',
  'type',
  'enum',
  'const',
  'format',
  'minLength',
  'maxLength',
  'pattern',
  'minimum',
  'maximum',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'oneOf',
]);
