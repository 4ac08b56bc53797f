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
  if (!existsSync(path.join(absolute, 'index.html'))) {
    throw new Error(`The console build has no index.html in ${absolute} (run npm run build -w web).`);
  }
  // serveStatic wants a root relative to the working directory.
  const root = path.relative(process.cwd(), absolute) || '.';
  const files = serveStatic({ root });
  const shell = serveStatic({ path: path.join(root, 'index.html') });

  const app = new Hono<AppEnv>();
  app.get('*', async (c, next) => {
    const immutable = c.req.path.startsWith('/_app/immutable/');
    let res = await files(c, async () => {});
    // Not a file: the SPA shell, unless the path looked like an asset.
    if (!res && !c.req.path.startsWith('/_app/') && path.extname(c.req.path) === '') {
      res = await shell(c, async () => {});
    }
    if (!res) return next();
    res.headers.set('cache-control', immutable && res.status === 200 ? IMMUTABLE : 'no-cache');
    return res;
  });
  return app;
}
