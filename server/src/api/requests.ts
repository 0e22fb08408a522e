/**
 * What every control-API route reads from a request the same way: JSON bodies, ids in
 * the path, the client's address, the key a request acts for, targeting fields, and the
 * answer for a method the route does not serve.
 */

import type { components } from '@ipcola/openapi';
import express, { type Request, type RequestHandler } from 'express';
import { formatMoney } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { LeaseTargeting } from '../leases/index.ts';
import type { Caller } from './auth.ts';

type Schemas = components['schemas'];

const BODY_LIMIT = '64kb';

const TARGETING_FIELDS = ['country', 'region', 'city', 'asn', 'type'] as const;

const parseJson = express.json({ limit: BODY_LIMIT, type: 'application/json', strict: true });

/** JSON bodies only (a cross-site form cannot send one), parsed up to 64 KiB. */
export const jsonBody: RequestHandler = (req, res, next) => {
  const length = req.headers['content-length'];
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (hasBody && !req.is('application/json')) {
    throw ipcolaError('unsupported_media_type', 'The request body must be application/json');
  }
  parseJson(req, res, next);
};

export function requiredBody(req: Request): unknown {
  if (req.body === undefined) {
    throw ipcolaError('invalid_request', 'The request body is required: a JSON object');
  }
  return req.body;
}

export function optionalBody(req: Request): unknown {
  return req.body === undefined ? {} : req.body;
}

export function onlyMethods(...methods: string[]): RequestHandler {
  return (_req, res) => {
    res.setHeader('Allow', methods.join(', '));
    throw ipcolaError('method_not_allowed', `Only ${methods.join(', ')} is allowed here`);
  };
}

export function idParam(req: Request): string {
  const id = req.params.id;
  // Ids are short lowercase text; anything else names nothing (and never reaches SQL as such).
  return typeof id === 'string' && /^[a-z0-9]{1,64}$/.test(id) ? id : '-';
}

/** The thing looked up, or not_found saying `what` was not. */
export function found<T>(value: T | null | undefined | false, what: string): T {
  if (!value) throw ipcolaError('not_found', what);
  return value;
}

/** The client's address: the peer's, or what a proxy listed in TRUST_PROXY forwarded. */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/** The key a lease or proxy list is for: the one named, else the API key calling. */
export function keyIdFor(body: { key_id?: string }, who: Caller): string {
  const keyId = body.key_id ?? (who.kind === 'key' ? who.keyId : undefined);
  if (keyId === undefined) {
    throw ipcolaError('invalid_request', 'key_id is required when signed in as a user');
  }
  return keyId;
}

/** The targeting fields of a lease or proxy-list request (already checked by the schema). */
export function targetingOf(body: Schemas['CreateLeaseRequest']): LeaseTargeting {
  return Object.fromEntries(
    TARGETING_FIELDS.flatMap((field) => (body[field] === undefined ? [] : [[field, body[field]]])),
  );
}

/** Micro-units of a currency as the API shows money: exact, and as a decimal for display. */
export function moneyView(currency: string, micro: number): Schemas['Money'] {
  return { currency, amount_micro: micro, amount: formatMoney(micro) };
}
