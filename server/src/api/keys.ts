/**
 * /v1/keys: API keys. A key's secret is shown once, when it is made or rotated, with
 * ready proxy URLs; afterwards only its settings are.
 */

import type { components } from '@ipcola/openapi';
import express, { type Router } from 'express';
import type { Accounts, IssuedKey, KeyChanges, KeyView } from '../accounts/index.ts';
import { ipcolaError, isIPColaError } from '../errors/index.ts';
import { parseUsernameParameters } from '../gateway/credentials.ts';
import { callerOf } from './auth.ts';
import { keyConnection, type ProxyEndpoint } from './connection.ts';
import type { ResourceRouterOptions } from './control.ts';
import { createdList } from './pages.ts';
import { found, idParam, jsonBody, onlyMethods, optionalBody, requiredBody } from './requests.ts';

type Schemas = components['schemas'];

export interface KeysOptions extends ResourceRouterOptions {
  accounts: Pick<
    Accounts,
    'listKeys' | 'issueKey' | 'getKey' | 'updateKey' | 'revokeKey' | 'rotateKey'
  >;
}

export function keysRouter(options: KeysOptions): Router {
  const { accounts, bodies, caller, idempotent, endpoint } = options;
  const router = express.Router();

  router
    .route('/keys')
    .get(caller, createdList(accounts.listKeys.bind(accounts), keyView))
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateKeyRequest', optionalBody(req));
      const { name, scopes, ...settings } = keyChanges(body);
      const key = await accounts.issueKey(callerOf(res).accountId, {
        ...settings,
        name: name ?? '',
        ...(scopes ? { scopes } : {}),
      });
      res.status(201).json(keyCreatedView(key, endpoint()));
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/keys/:id')
    .get(caller, async (req, res) => {
      const key = found(
        await accounts.getKey(callerOf(res).accountId, idParam(req)),
        'No such key',
      );
      res.json(keyView(key));
    })
    .patch(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('UpdateKeyRequest', requiredBody(req));
      const changes = keyChanges(body);
      const key = found(
        await accounts.updateKey(callerOf(res).accountId, idParam(req), changes),
        'No such key',
      );
      res.json(keyView(key));
    })
    .delete(caller, idempotent, async (req, res) => {
      found(await accounts.revokeKey(callerOf(res).accountId, idParam(req)), 'No such key');
      res.status(204).end();
    })
    .all(onlyMethods('GET', 'HEAD', 'PATCH', 'DELETE'));

  router
    .route('/keys/:id/rotate')
    .post(caller, idempotent, async (req, res) => {
      const key = found(
        await accounts.rotateKey(callerOf(res).accountId, idParam(req)),
        'No such key',
      );
      res.json(keyCreatedView(key, endpoint()));
    })
    .all(onlyMethods('POST'));

  return router;
}

/** A new or rotated key with its secret and ready proxy URLs: the one time they are shown. */
function keyCreatedView(key: IssuedKey, proxy: ProxyEndpoint): Schemas['KeyCreated'] {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    created_at: key.createdAt.toISOString(),
    secret: key.secret,
    ...keyConnection(proxy, key.id, key.secret),
  };
}

/** The settings a create or update request names (already checked by the schema). */
function keyChanges(body: Schemas['UpdateKeyRequest']): KeyChanges {
  const changes: KeyChanges = {};
  if (body.name !== undefined) changes.name = body.name;
  if (body.disabled !== undefined) changes.disabled = body.disabled;
  if (body.monthly_byte_cap !== undefined) changes.monthlyByteCap = body.monthly_byte_cap;
  if (body.max_concurrency !== undefined) changes.maxConcurrency = body.max_concurrency;
  if (body.scopes !== undefined) changes.scopes = body.scopes;
  if (body.allowed_countries !== undefined) changes.allowedCountries = body.allowed_countries;
  if (body.client_allowlist !== undefined) changes.clientAllowlist = body.client_allowlist;
  if (body.passwordless_cidrs !== undefined) changes.passwordlessCidrs = body.passwordless_cidrs;
  if (body.default_targeting !== undefined) {
    changes.defaultTargeting = checkedDefaultTargeting(body.default_targeting);
  }
  return changes;
}

/** Default targeting is read by the username parser at every password-less connection: it must parse. */
function checkedDefaultTargeting(text: string): string {
  try {
    parseUsernameParameters(text);
  } catch (error) {
    if (!isIPColaError(error)) throw error;
    throw ipcolaError('invalid_request', `default_targeting: ${error.message}`);
  }
  return text;
}

function keyView(key: KeyView): Schemas['Key'] {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    disabled: key.disabled,
    monthly_byte_cap: key.monthlyByteCap,
    max_concurrency: key.maxConcurrency,
    allowed_countries: key.allowedCountries,
    client_allowlist: key.clientAllowlist,
    passwordless_cidrs: key.passwordlessCidrs,
    default_targeting: key.defaultTargeting,
    created_at: key.createdAt.toISOString(),
    updated_at: key.updatedAt.toISOString(),
  };
}
