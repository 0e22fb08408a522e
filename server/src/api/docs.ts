/**
 * The OpenAPI document as served, and the rendered documentation at /docs: swagger-ui's
 * static bundle over /openapi.yaml, with no inline script, so a strict
 * Content-Security-Policy holds.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Router } from 'express';

/*
 * The assets' folder, found without loading the package: its index.js evaluates the whole
 * browser bundle in Node (4 MB of source kept as a string, its compiled code): 10 MB of
 * heap and some 40 MB of RSS for nothing, measured on 2026-12-06.
 */
const docsAssets = path.dirname(
  createRequire(import.meta.url).resolve('swagger-ui-dist/absolute-path.js'),
);

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IPCola API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.yaml', dom_id: '#swagger-ui', deepLinking: true });
`;

export function documentationRouter(openapiDocument: string): Router {
  const router = express.Router();
  router.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml; charset=utf-8').send(openapiDocument);
  });

  const docsPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";
  router.get('/docs', (_req, res) => {
    res.setHeader('Content-Security-Policy', docsPolicy);
    res.type('html').send(DOCS_PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.type('application/javascript').send(DOCS_INIT);
  });
  for (const asset of ['swagger-ui.css', 'swagger-ui-bundle.js']) {
    router.get(`/docs/${asset}`, (_req, res) => {
      res.setHeader('Cache-Control', 'public, max-age=86400');
      res.sendFile(path.join(docsAssets, asset));
    });
  }
  return router;
}
