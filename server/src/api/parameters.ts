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

interface MediaTypes {
  content?: Record<string, { schema?: Record<string, unknown> }>;
}

interface Operation {
  parameters?: Array<Parameter | { $ref: string }>;
  responses?: Record<string, MediaTypes | { $ref: string }>;
}

interface Route {
  pattern: RegExp;
  names: string[];
  operations: Map<
    string,
    { parameters: Parameter[]; answers: Map<string, Record<string, unknown>> }
  >;
}

type ApiDocument = {
  paths?: Record<string, Record<string, unknown>>;
  components?: {
    parameters?: Record<string, Parameter>;
    responses?: Record<string, MediaTypes>;
    schemas?: unknown;
  };
};

const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

/** The document's operations, found by path and method. */
function operationsOf(document: ApiDocument) {
  const shared = document.components?.parameters ?? {};
  const sharedAnswers = document.components?.responses ?? {};
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
    const operations: Route['operations'] = new Map();
    for (const method of METHODS) {
      const operation = item[method] as Operation | undefined;
      if (!operation) continue;
      const answers = new Map<string, Record<string, unknown>>();
      for (const [status, answer] of Object.entries(operation.responses ?? {})) {
        const media = '$ref' in answer ? sharedAnswers[answer.$ref.split('/').pop() ?? ''] : answer;
        const schema = media?.content?.['application/json']?.schema;
        if (schema) answers.set(status, schema);
      }
      operations.set(method, {
        parameters: [...common, ...(operation.parameters ?? []).map(resolve)],
        answers,
      });
    }
    return { pattern, names, operations };
  });

  return (path: string, httpMethod: string) => {
    const method = httpMethod === 'HEAD' ? 'get' : httpMethod.toLowerCase();
    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (match) return { route, match, operation: route.operations.get(method) };
    }
    return undefined;
  };
}

export function createParameterCheck(
  document: ApiDocument,
  validator: BodyValidator,
): RequestHandler {
  const find = operationsOf(document);
  return (req, _res, next) => {
    const found = find(`${req.baseUrl}${req.path}`, req.method);
    // An undocumented path or method is the routes' own business (404, 405).
    if (!found?.operation) return next();
    const { route, match } = found;
    const { parameters } = found.operation;
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
  };
}

/**
 * Checks every JSON answer of /v1 against the document's schema for its operation and
 * status. A mismatch is a bug of ours: it is reported, and answered as internal_error
 * when `strict` (the test suite runs so), so that no test passes on an undocumented answer.
 */
export function createAnswerCheck(
  document: ApiDocument,
  validator: BodyValidator,
  options: { strict: boolean; onMismatch: (where: string, failure: string) => void },
): RequestHandler {
  const find = operationsOf(document);
  return (req, res, next) => {
    const found = find(`${req.baseUrl}${req.path}`, req.method);
    const answers = found?.operation?.answers;
    if (!answers) return next();
    const json = res.json.bind(res);
    res.json = (body: unknown) => {
      const schema = answers.get(String(res.statusCode));
      const failure = schema ? validator.checkValue(schema, body, 'answer') : null;
      if (failure) {
        const where = `${req.method} ${req.baseUrl}${req.path} ${res.statusCode}`;
        options.onMismatch(where, failure);
        if (options.strict) {
          res.status(500);
          return json({
            error: { code: 'internal_error', message: `answer off the document: ${failure}` },
          });
        }
      }
      return json(body);
    };
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
