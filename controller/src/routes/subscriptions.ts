// GET /sub/<token>: a proxy user's subscription, public (no session: the random token is the
// credential, rotatable from the console). Base64 link list by default; Clash (YAML) or sing-box
// (JSON) by `?format=` or by the client's User-Agent. Every answer carries the
// `subscription-userinfo` header (upload, download, total, expire) that clients show. Requests are
// limited per client address (a fixed window), since the route is open to the internet.
import { Hono } from 'hono';
import { stringify as toYaml } from 'yaml';
import { KeelError } from '@keel/shared';
import type { ProxyUsersService } from '../services/proxy-users.ts';
import type { AppEnv } from './env.ts';
import { permit } from './permit.ts';

/** Requests one address may make per window, and the window. */
export const SUBSCRIPTION_RATE = { requests: 30, windowMs: 60_000, maxAddresses: 10_000 };

type Format = 'base64' | 'clash' | 'sing-box';

/** The format a client wants: `?format=` first, else its User-Agent, else base64. */
export function subscriptionFormat(query: string | undefined, userAgent: string | undefined): Format | null {
  if (query !== undefined) {
    if (query === 'base64' || query === 'links') return 'base64';
    if (query === 'clash' || query === 'mihomo') return 'clash';
    if (query === 'sing-box' || query === 'singbox') return 'sing-box';
    return null;
  }
  const ua = (userAgent ?? '').toLowerCase();
  if (/clash|mihomo|stash/.test(ua)) return 'clash';
  if (/sing-box|singbox|sfa\/|sfi\/|sfm\/|sft\//.test(ua)) return 'sing-box';
  return 'base64';
}

/** The public subscription route (mounted at the root, beside /install.sh). */
export function subscriptionRoutes({ proxyUsers }: { proxyUsers: ProxyUsersService }) {
  const hits = new Map<string, { start: number; n: number }>();
  const app = new Hono<AppEnv>();
  app.get('/sub/:token', permit.public(), async (c) => {
    const ip = c.get('clientIp') ?? 'unknown';
    const at = Date.now();
    let h = hits.get(ip);
    if (!h || at - h.start >= SUBSCRIPTION_RATE.windowMs) {
      if (!h && hits.size >= SUBSCRIPTION_RATE.maxAddresses) {
        // Bounded memory: forget the oldest window first (Map keeps insertion order).
        const oldest = hits.keys().next().value;
        if (oldest !== undefined) hits.delete(oldest);
      }
      hits.delete(ip);
      h = { start: at, n: 0 };
      hits.set(ip, h);
    }
    if (++h.n > SUBSCRIPTION_RATE.requests) {
      const err = new KeelError('request.rate_limited');
      (err as unknown as { retryAfterSeconds: number }).retryAfterSeconds =
        (h.start + SUBSCRIPTION_RATE.windowMs - at) / 1000;
      throw err;
    }
    const format = subscriptionFormat(c.req.query('format'), c.req.header('user-agent'));
    if (!format) throw new KeelError('request.invalid', 'format: one of base64, clash, sing-box');
    const sub = await proxyUsers.subscription(c.req.param('token'), format);
    c.header('subscription-userinfo', sub.userinfo);
    c.header('profile-update-interval', '12');
    c.header('cache-control', 'no-store');
    c.header(
      'content-disposition',
      `attachment; filename="${sub.name}${format === 'clash' ? '.yaml' : format === 'sing-box' ? '.json' : '.txt'}"`,
    );
    if (format === 'clash') {
      return c.body(toYaml(sub.body), 200, { 'content-type': 'text/yaml; charset=utf-8' });
    }
    if (format === 'sing-box') return c.json(sub.body, 200);
    return c.text(sub.body as string, 200);
  });
  return app;
}
