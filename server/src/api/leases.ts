/**
 * /v1/leases: sticky sessions made ahead of use, each pinned to one exit until it is
 * released or lapses.
 */

import type { components } from '@ipcola/openapi';
import express, { type Router } from 'express';
import type { Lease, Leases } from '../leases/index.ts';
import { callerOf } from './auth.ts';
import { leaseConnection } from './connection.ts';
import type { ResourceRouterOptions } from './control.ts';
import { createdList } from './pages.ts';
import {
  found,
  idParam,
  jsonBody,
  keyIdFor,
  onlyMethods,
  optionalBody,
  targetingOf,
} from './requests.ts';

type Schemas = components['schemas'];

export interface LeasesOptions extends ResourceRouterOptions {
  leases: Leases;
}

export function leasesRouter(options: LeasesOptions): Router {
  const { leases, bodies, caller, idempotent, endpoint } = options;
  const router = express.Router();
  const leaseView = (lease: Lease): Schemas['Lease'] => ({
    id: lease.id,
    key_id: lease.keyId,
    ...leaseConnection(endpoint(), lease.keyId, lease.targeting, {
      id: lease.id,
      ttlMs: lease.ttlSeconds * 1000,
    }),
    ttl_seconds: lease.ttlSeconds,
    active: lease.active,
    exit: lease.exit && {
      ip: lease.exit.ip,
      country: lease.exit.country ?? null,
      city: lease.exit.city ?? null,
      type: lease.exit.type as Schemas['ExitType'],
    },
    expires_at: lease.expiresAt?.toISOString() ?? null,
    created_at: lease.createdAt.toISOString(),
  });

  router
    .route('/leases')
    .get(caller, createdList(leases.list.bind(leases), leaseView))
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateLeaseRequest', optionalBody(req));
      const who = callerOf(res);
      const keyId = keyIdFor(body, who);
      const targeting = targetingOf(body);
      const lease = found(
        await leases.create(who.accountId, keyId, targeting, body.ttl_seconds ?? 600),
        'No such key',
      );
      res.status(201).json(leaseView(lease));
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/leases/:id')
    .get(caller, async (req, res) => {
      const lease = found(await leases.get(callerOf(res).accountId, idParam(req)), 'No such lease');
      res.json(leaseView(lease));
    })
    .delete(caller, idempotent, async (req, res) => {
      found(await leases.release(callerOf(res).accountId, idParam(req)), 'No such lease');
      res.status(204).end();
    })
    .all(onlyMethods('GET', 'HEAD', 'DELETE'));

  router
    .route('/leases/:id/renew')
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('RenewLeaseRequest', optionalBody(req));
      const lease = found(
        await leases.renew(callerOf(res).accountId, idParam(req), body.ttl_seconds),
        'No such lease, or it has lapsed',
      );
      res.json(leaseView(lease));
    })
    .all(onlyMethods('POST'));

  return router;
}
