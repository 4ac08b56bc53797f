// The console: the SvelteKit static build served on the same origin as the API. Hashed assets
// under /_app/immutable/ are cached forever; everything else revalidates, and any path that is
// not a file gets index.html so the SPA's client-side router can take it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import type { AppEnv } from './env.ts';

const IMMUTABLE = 'public, max-age=31536000, immutable';

/** Serves `webRoot` (the console build) for every path the API did not take. */
export function consoleRoutes(webRoot: string) {
  const absolute = path.resolve(webRoot);
  // serveStatic wants a root relative to the working directory.
  const root = path.relative(process.cwd(), absolute) || '.';
  const indexFile = path.join(root, 'index.html');
  if (!existsSync(path.join(absolute, 'index.html'))) {
    throw new Error(`The console build has no index.html in ${absolute} (run npm run build -w web).`);
  }
  const app = new Hono<AppEnv>();
  app.get(
    '*',
    serveStatic({
      root,
      onFound: (file, c) => {
        c.header(
          'cache-control',
          c.req.path.startsWith('/_app/immutable/') ? IMMUTABLE : 'no-cache',
        );
      },
    }),
    // Not a file: the SPA shell, unless it looked like a missing asset.
    async (c, next) => {
      if (c.req.path.startsWith('/_app/') || path.extname(c.req.path) !== '') return next();
      const serveIndex = serveStatic({
        path: indexFile,
        onFound: (_file, ctx) => {
          ctx.header('cache-control', 'no-cache');
        },
      });
      return serveIndex(c, next);
    },
  );
  return app;
}
