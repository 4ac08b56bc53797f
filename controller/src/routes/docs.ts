// /api/v1/docs: a browsable API reference (Swagger UI) that works offline. The page and its assets
// come from the swagger-ui-dist package in node_modules, never from a CDN.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Hono } from 'hono';
import type { AppEnv } from './env.ts';
import { permit } from './permit.ts';

/** The directory holding swagger-ui-dist's files. */
export function swaggerUiDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
}

const assets: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

// Kept in a file rather than inline so the page's CSP can forbid inline scripts. It sends the
// session's CSRF token with "Try it out" requests, which the API requires for mutations.
const initScript = `'use strict';
let csrfToken = null;
fetch('/api/v1/auth/session', { credentials: 'same-origin' })
  .then((r) => (r.ok ? r.json() : null))
  .then((s) => { csrfToken = s && s.csrfToken; })
  .catch(() => {});
window.ui = SwaggerUIBundle({
  url: '/api/v1/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
  requestInterceptor: (req) => {
    if (csrfToken && !/^(GET|HEAD|OPTIONS)$/i.test(req.method)) req.headers['x-csrf-token'] = csrfToken;
    return req;
  },
});
`;

const page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Keel API</title>
    <link rel="stylesheet" href="/api/v1/docs/assets/swagger-ui.css" />
    <link rel="icon" type="image/png" href="/api/v1/docs/assets/favicon-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/api/v1/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/api/v1/docs/assets/init.js"></script>
  </body>
</html>
`;

const csp = [
  "default-src 'self'",
  "script-src 'self'",
  // Swagger UI sets style attributes at run time.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The docs page at `/docs` (mounted under `/api/v1`) and its assets at
 * `/docs/assets/*`. `dir` overrides where swagger-ui-dist lives (for a bundled deployment).
 */
export function docsRoutes(dir?: string) {
  const cache = new Map<string, Buffer>();
  const app = new Hono<AppEnv>();
  app.get('/docs', permit.public(), (c) => {
    c.header('content-security-policy', csp);
    c.header('cache-control', 'no-cache');
    return c.html(page);
  });
  app.get('/docs/', permit.public(), (c) => c.redirect('/api/v1/docs', 301));
  app.get('/docs/assets/init.js', permit.public(), (c) => {
    c.header('content-type', 'text/javascript; charset=utf-8');
    c.header('cache-control', 'no-cache');
    return c.body(initScript);
  });
  app.get('/docs/assets/:file', permit.public(), async (c) => {
    const file = c.req.param('file');
    const type = assets[file];
    if (!type) return c.notFound();
    let body = cache.get(file);
    if (!body) {
      body = await readFile(path.join(dir ?? swaggerUiDir(), file));
      cache.set(file, body);
    }
    c.header('content-type', type);
    c.header('cache-control', 'public, max-age=86400');
    return c.body(new Uint8Array(body));
  });
  return app;
}
