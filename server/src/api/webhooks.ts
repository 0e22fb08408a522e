/**
 * /v1/webhooks: the account's webhook endpoints, their deliveries and test events. An
 * endpoint's signing secret is shown once, when it is made; deliveries are listed
 * newest first with every attempt.
 */

import type { components } from '@ipcola/openapi';
import express, { type Router } from 'express';
import type {
  CreatedWebhookEndpoint,
  Delivery,
  EndpointChanges,
  WebhookEndpoint,
  Webhooks,
} from '../webhooks/index.ts';
import { callerOf } from './auth.ts';
import type { ResourceRouterOptions } from './control.ts';
import { createdList, createdPage } from './pages.ts';
import { found, idParam, jsonBody, onlyMethods, requiredBody } from './requests.ts';

type Schemas = components['schemas'];

export interface WebhooksRouterOptions extends Omit<ResourceRouterOptions, 'endpoint'> {
  webhooks: Pick<Webhooks, 'endpoints' | 'sendTest' | 'listDeliveries'>;
}

export function webhooksRouter(options: WebhooksRouterOptions): Router {
  const { webhooks, bodies, caller, idempotent } = options;
  const { endpoints } = webhooks;
  const router = express.Router();
  const NOT_FOUND = 'No such webhook endpoint';

  router
    .route('/webhooks')
    .get(caller, createdList(endpoints.list.bind(endpoints), webhookView))
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateWebhookRequest', requiredBody(req));
      const created = await endpoints.create(callerOf(res).accountId, {
        url: body.url,
        events: body.events,
        ...(body.description === undefined ? {} : { description: body.description }),
      });
      res.status(201).json(webhookCreatedView(created));
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/webhooks/:id')
    .get(caller, async (req, res) => {
      const endpoint = await endpoints.get(callerOf(res).accountId, idParam(req));
      res.json(webhookView(found(endpoint, NOT_FOUND)));
    })
    .patch(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('UpdateWebhookRequest', requiredBody(req));
      const changes: EndpointChanges = {};
      if (body.url !== undefined) changes.url = body.url;
      if (body.events !== undefined) changes.events = body.events;
      if (body.description !== undefined) changes.description = body.description;
      if (body.disabled !== undefined) changes.disabled = body.disabled;
      const endpoint = await endpoints.update(callerOf(res).accountId, idParam(req), changes);
      res.json(webhookView(found(endpoint, NOT_FOUND)));
    })
    .delete(caller, idempotent, async (req, res) => {
      found(await endpoints.delete(callerOf(res).accountId, idParam(req)), NOT_FOUND);
      res.status(204).end();
    })
    .all(onlyMethods('GET', 'HEAD', 'PATCH', 'DELETE'));

  router
    .route('/webhooks/:id/deliveries')
    .get(caller, async (req, res) => {
      const accountId = callerOf(res).accountId;
      const page = await createdPage(req, async (listing) =>
        found(await webhooks.listDeliveries(accountId, idParam(req), listing), NOT_FOUND),
      );
      res.json({
        items: page.items.map(deliveryView),
        next_cursor: page.nextCursor,
      } satisfies Schemas['WebhookDeliveryList']);
    })
    .all(onlyMethods('GET', 'HEAD'));

  router
    .route('/webhooks/:id/test')
    .post(caller, idempotent, async (req, res) => {
      const delivery = await webhooks.sendTest(callerOf(res).accountId, idParam(req));
      res.status(202).json(deliveryView(found(delivery, NOT_FOUND)));
    })
    .all(onlyMethods('POST'));

  return router;
}

function webhookView(endpoint: WebhookEndpoint): Schemas['Webhook'] {
  return {
    id: endpoint.id,
    url: endpoint.url,
    events: endpoint.events,
    description: endpoint.description,
    disabled: endpoint.disabled,
    created_at: endpoint.createdAt.toISOString(),
    updated_at: endpoint.updatedAt.toISOString(),
  };
}

function webhookCreatedView(endpoint: CreatedWebhookEndpoint): Schemas['WebhookCreated'] {
  return { ...webhookView(endpoint), secret: endpoint.secret };
}

function deliveryView(delivery: Delivery): Schemas['WebhookDelivery'] {
  return {
    id: delivery.id,
    event_id: delivery.eventId,
    type: delivery.type,
    status: delivery.status,
    next_attempt_at: delivery.nextAttemptAt?.toISOString() ?? null,
    created_at: delivery.createdAt.toISOString(),
    attempts: delivery.attempts.map((attempt) => ({
      at: attempt.at.toISOString(),
      status_code: attempt.statusCode,
      error: attempt.error as Schemas['WebhookAttempt']['error'],
      duration_ms: attempt.durationMs,
    })),
  };
}
