/**
 * The portal at `/`: the built React app (portal/dist) with its client-side routes falling
 * back to index.html, hashed assets cached for good and the page itself never, under a
 * strict Content-Security-Policy. The API's own paths are left to the API.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import compression from 'compression';
import express, { type Router } from 'express';
import { ipcolaError } from '../errors/index.ts';
import { portalPolicy } from './content-security-policy.ts';

export const PORTAL_DIST = fileURLToPath(new URL('../../../portal/dist/', import.meta.url));

/** Paths the API answers; the portal never shadows them, even where the API says 404. */
const API_PATHS = /^\/(v1|docs|openapi\.yaml|healthz|readyz|metrics)(\/|$)/;
/** A path naming a file (`/robots.txt`) is not a client-side route. */
const FILE_NAME = /\/[^/]*\.[^/]*$/;
const NONCE_PLACEHOLDER = '__CSP_NONCE__';

const NOT_BUILT = `The IPCola portal is not built yet.

Build it with:  npm run build --workspace @ipcola/portal
(npm install builds it too). The API is served at /v1, its documentation at /docs.
`;

export function portalRouter(directory: string = PORTAL_DIST): Router {
  const router = express.Router();
  router.use(
    '/assets',
    // The bundles are text: gzip or brotli make the first page's JavaScript a third.
    compression(),
    express.static(path.join(directory, 'assets'), {
      index: false,
      immutable: true,
      maxAge: '365d',
      fallthrough: true,
    }),
    (_req, _res, next) => next(ipcolaError('not_found')),
  );

  let page: string | undefined;
  router.use(async (req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || API_PATHS.test(req.path)) {
      return next();
    }
    if (FILE_NAME.test(req.path)) return next();
    // Read once found; until then each request looks again, so a build made while the
    // server runs is picked up.
    page ??= await readFile(path.join(directory, 'index.html'), 'utf8').catch(() => undefined);
    res.setHeader('Cache-Control', 'no-cache');
    if (page === undefined) {
      res.status(503).type('text/plain; charset=utf-8').send(NOT_BUILT);
      return;
    }
    const nonce = randomBytes(16).toString('base64');
    res.setHeader('Content-Security-Policy', portalPolicy(nonce));
    res.setHeader('Referrer-Policy', 'same-origin');
    res.type('html').send(page.replaceAll(NONCE_PLACEHOLDER, nonce));
  });
  return router;
}
