/**
 * Query and path parameters checked against the OpenAPI document, like request bodies:
 * the operation is found by path template and method, a query parameter it does not
 * declare is refused, and each declared one is converted (integer, boolean) and checked
 * against its schema. Handlers then read parameters the document vouches for. Header
 * parameters (X-CSRF-Token, Idempotency-Key) are the business of their own middleware.
 */
import type { RequestHandler } from 'express';
import { ipcolaError } from '../errors/index.ts';
import type { BodyValidator } from './validate.ts';

interface Parameter {
  name: string;
  in: 'query' | 'path' | 'header' | 'cookie';
  required?: boolean;
  schema?: Record<string, unknown>;
}

interface Operation {
  parameters?: Array<Parameter | { $ref: string }>;
}

interface Route {
  pattern: RegExp;
  names: string[];
  operations: Map<string, Parameter[]>;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

export function createParameterCheck(
  document: {
    paths?: Record<string, Record<string, unknown>>;
    components?: { parameters?: Record<string, Parameter> };
  },
  validator: BodyValidator,
): RequestHandler {
  const shared = document.components?.parameters ?? {};
  const resolve = (parameter: Parameter | { $ref: string }): Parameter => {
    if (!('$ref' in parameter)) return parameter;
    const name = /^#\/components\/parameters\/([A-Za-z0-9_]+)$/.exec(parameter.$ref)?.[1];
    const found = name ? shared[name] : undefined;
    if (!found) throw new Error(`the OpenAPI document has no parameter ${parameter.$ref}`);
    return found;
  };

  const routes: Route[] = Object.entries(document.paths ?? {}).map(([template, item]) => {
    const names = [...template.matchAll(/\{([^}]+)\}/g)].map((match) => match[1] as string);
    // Templates hold letters, digits, '/', '.', '-' and {names}: only '.' needs escaping.
    const pattern = new RegExp(
      `^${template.replaceAll('.', '\\.').replace(/\{[^}]+\}/g, '([^/]+)')}$`,
    );
    const common = ((item.parameters ?? []) as Operation['parameters'] & object).map(resolve);
    const operations = new Map<string, Parameter[]>();
    for (const method of METHODS) {
      const operation = item[method] as Operation | undefined;
      if (operation) {
        operations.set(method, [...common, ...(operation.parameters ?? []).map(resolve)]);
      }
    }
    return { pattern, names, operations };
  });

  return (req, _res, next) => {
    const path = `${req.baseUrl}${req.path}`;
    const method = req.method === 'HEAD' ? 'get' : req.method.toLowerCase();
    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      const parameters = route.operations.get(method);
      // An undocumented method is the route's own business (405).
      if (!parameters) return next();
      const query = parameters.filter((parameter) => parameter.in === 'query');
      for (const name of Object.keys(req.query)) {
        if (!query.some((parameter) => parameter.name === name)) {
          throw ipcolaError('invalid_request', `unknown query parameter ${name}`);
        }
      }
      for (const parameter of query) {
        const raw = req.query[parameter.name];
        if (raw === undefined) {
          if (parameter.required) {
            throw ipcolaError('invalid_request', `query parameter ${parameter.name} is required`);
          }
          continue;
        }
        if (typeof raw !== 'string') {
          throw ipcolaError('invalid_request', `${parameter.name} must be given once`);
        }
        check(validator, parameter, raw);
      }
      for (const [index, name] of route.names.entries()) {
        const parameter = parameters.find((p) => p.in === 'path' && p.name === name);
        if (parameter) check(validator, parameter, decodeURIComponent(match[index + 1] ?? ''));
      }
      return next();
    }
    next();
  };
}

/** Converts the text to the schema's type and checks it; throws invalid_request naming it. */
function check(validator: BodyValidator, parameter: Parameter, raw: string): void {
  const schema = parameter.schema ?? {};
  let value: unknown = raw;
  if (schema.type === 'integer' || schema.type === 'number') {
    value = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
  } else if (schema.type === 'boolean') {
    value = raw === 'true' ? true : raw === 'false' ? false : raw;
  }
  const failure = validator.checkValue(schema, value, parameter.name);
  if (failure) throw ipcolaError('invalid_request', failure);
}
