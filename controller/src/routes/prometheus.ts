// GET /metrics: the Prometheus target (text exposition format 0.0.4) for the whole fleet — the
// newest figures of every host the caller may read, labelled `host`, plus the controller's own.
// Authentication: `Authorization: Bearer <API token>` holding `metrics.read` (make one with only
// that permission for the scraper; limit it to host groups to expose only theirs), or a console
// session. Without either: 401; without the permission: 403.
import { Hono, type MiddlewareHandler } from 'hono';
import type { PrometheusService } from '../services/prometheus.ts';
import { sessionOf, type AppEnv } from './env.ts';
import { permit } from './permit.ts';

export function prometheusRoutes(deps: {
  prometheus: PrometheusService;
  session: MiddlewareHandler<AppEnv>;
}) {
  const app = new Hono<AppEnv>();
  app.get('/metrics', deps.session, permit('metrics.read'), async (c) => {
    const body = await deps.prometheus.render(sessionOf(c).actor);
    c.header('cache-control', 'no-store');
    return c.body(body, 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
  });
  return app;
}
