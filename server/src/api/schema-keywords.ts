/**
 * The checks behind single JSON Schema keywords (type, string, number and array bounds,
 * formats) that validate.ts composes into checks of whole schemas.
 */
import { isEmailAddress } from '../accounts/index.ts';

export type JsonSchema = Record<string, unknown>;
/** A failure message naming the field, or null. */
export type Check = (value: unknown, path: string) => string | null;

const FORMATS: Record<string, (value: string) => boolean> = {
  email: isEmailAddress,
  // RFC 3339: a date, a time and an offset; Date.parse alone would take "2026" or "May 1".
  'date-time': (value) =>
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i.test(value) &&
    !Number.isNaN(Date.parse(value)),
};

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

export function typeCheck(type: unknown): Check {
  const types = (Array.isArray(type) ? type : [type]) as string[];
  for (const name of types) {
    if (!(name in TYPE_NAMES)) throw new Error(`unsupported type ${name}`);
  }
  const wanted = types.map((name) => TYPE_NAMES[name]).join(' or ');
  return (value, path) =>
    types.some((name) => isType(value, name)) ? null : `${subject(path)} must be ${wanted}`;
}

function isType(value: unknown, type: string): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isSafeInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return isPlainObject(value);
    case 'array':
      return Array.isArray(value);
    default:
      return value === null;
  }
}

export function pushStringChecks(schema: JsonSchema, where: string, checks: Check[]) {
  const { minLength, maxLength, pattern, format } = schema as {
    minLength?: number;
    maxLength?: number;
    pattern?: string;
    format?: string;
  };
  if (minLength !== undefined || maxLength !== undefined) {
    checks.push((value, path) => {
      if (typeof value !== 'string') return null;
      const length = [...value].length;
      if (minLength !== undefined && length < minLength) {
        return minLength === 1
          ? `${subject(path)} must not be empty`
          : `${subject(path)} must be at least ${minLength} characters`;
      }
      if (maxLength !== undefined && length > maxLength) {
        return `${subject(path)} must be at most ${maxLength} characters`;
      }
      return null;
    });
  }
  if (pattern !== undefined) {
    const regex = new RegExp(pattern, 'u');
    checks.push((value, path) =>
      typeof value !== 'string' || regex.test(value)
        ? null
        : `${subject(path)} has characters that are not allowed (must match ${pattern})`,
    );
  }
  if (format !== undefined) {
    const test = FORMATS[format];
    if (!test) throw new Error(`schema ${where}: unsupported format ${format}`);
    checks.push((value, path) =>
      typeof value !== 'string' || test(value) ? null : `${subject(path)} is not a valid ${format}`,
    );
  }
}

export function pushNumberChecks(schema: JsonSchema, checks: Check[]) {
  const { minimum, maximum } = schema as { minimum?: number; maximum?: number };
  if (minimum === undefined && maximum === undefined) return;
  checks.push((value, path) => {
    if (typeof value !== 'number') return null;
    if (minimum !== undefined && value < minimum)
      return `${subject(path)} must be at least ${minimum}`;
    if (maximum !== undefined && value > maximum)
      return `${subject(path)} must be at most ${maximum}`;
    return null;
  });
}

export function pushArrayLengthChecks(schema: JsonSchema, checks: Check[]) {
  const { minItems, maxItems } = schema as { minItems?: number; maxItems?: number };
  if (minItems === undefined && maxItems === undefined) return;
  checks.push((value, path) => {
    if (!Array.isArray(value)) return null;
    if (minItems !== undefined && value.length < minItems) {
      return minItems === 1
        ? `${subject(path)} must not be empty`
        : `${subject(path)} must hold at least ${minItems} items`;
    }
    if (maxItems !== undefined && value.length > maxItems) {
      return `${subject(path)} must hold at most ${maxItems} items`;
    }
    return null;
  });
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function join(path: string, name: string): string {
  return path === '' ? name : `${path}.${name}`;
}

export function subject(path: string): string {
  return path === '' ? 'the request body' : path;
}
