// Probes for supervisors and load balancers: /healthz (the process answers) and /readyz (the
// database answers). Neither needs a session, and neither says more than ok / not ok.
import { Hono } from 'hono';
import type { AppEnv } from './env.ts';
import { permit } from './permit.ts';

/** `ready()` resolves true when the controller can serve (its database is reachable). */
export function healthRoutes(ready: () => boolean | Promise<boolean>) {
  const app = new Hono<AppEnv>();
  app.get('/healthz', permit.public(), (c) => {
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' }, 200);
  });
  app.get('/readyz', permit.public(), async (c) => {
    c.header('cache-control', 'no-store');
    let ok = false;
    try {
      ok = await ready();
    } catch {
      ok = false;
    }
    return ok ? c.json({ status: 'ready' }, 200) : c.json({ status: 'not_ready' }, 503);
  });
  return app;
}
