/**
 * POST /v1/proxy-lists: ready proxy lines for a key, sticky or rotating, with the key's
 * secret in them only when the caller showed it (or is that key).
 */
import { randomBytes } from 'node:crypto';
import type { components } from '@ipcola/openapi';
import express, { type Router } from 'express';
import type { Accounts } from '../accounts/index.ts';
import { ipcolaError } from '../errors/index.ts';
import { formatProxyUsername } from '../gateway/credentials.ts';
import { callerOf } from './auth.ts';
import { proxyLine } from './connection.ts';
import type { ResourceRouterOptions } from './control.ts';
import { found, jsonBody, keyIdFor, onlyMethods, optionalBody, targetingOf } from './requests.ts';

type Schemas = components['schemas'];

export interface ProxyListsOptions extends ResourceRouterOptions {
  accounts: Pick<Accounts, 'getKey' | 'verifyKey'>;
}

export function proxyListsRouter(options: ProxyListsOptions): Router {
  const { accounts, bodies, caller, idempotent, endpoint } = options;
  const router = express.Router();

  router
    .route('/proxy-lists')
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateProxyListRequest', optionalBody(req));
      const who = callerOf(res);
      const keyId = keyIdFor(body, who);
      found(await accounts.getKey(who.accountId, keyId), 'No such key');
      let password: string | undefined;
      if (body.secret !== undefined) {
        if (!(await accounts.verifyKey(keyId, body.secret))) {
          throw ipcolaError('invalid_request', 'secret is not the secret of this key');
        }
        password = body.secret;
      } else if (who.kind === 'key' && who.keyId === keyId) {
        password = who.secret;
      }
      const targeting = targetingOf(body);
      const sticky = body.sticky ?? true;
      const format = body.format ?? 'hostport';
      const ttlMs = (body.ttl_seconds ?? 600) * 1000;
      const proxies = Array.from({ length: body.count ?? 10 }, () =>
        proxyLine(
          endpoint(),
          format,
          formatProxyUsername(
            keyId,
            targeting,
            sticky ? { id: randomBytes(8).toString('hex'), ttlMs } : null,
          ),
          password ?? 'SECRET',
        ),
      );
      res.json({
        key_id: keyId,
        format,
        sticky,
        password_included: password !== undefined,
        proxies,
      } satisfies Schemas['ProxyList']);
    })
    .all(onlyMethods('POST'));

  return router;
}
