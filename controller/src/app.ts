// The controller's HTTP app: the REST API under /api/v1 (with its OpenAPI document and docs page),
// the health probes, and the console SPA. The agent WebSocket is wired beside it in main.ts.
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { secureHeaders } from 'hono/secure-headers';
import type { Logger } from 'pino';
import { KeelError } from '@keel/shared';
import type { FleetBus } from './bus/index.ts';
import type { Db } from './db/index.ts';
import type { AgentGateway } from './gateway/types.ts';
import { authRoutes } from './routes/auth.ts';
import { consoleRoutes } from './routes/console.ts';
import { docsRoutes } from './routes/docs.ts';
import { createRouter, type AppEnv } from './routes/env.ts';
import { errorHandler, notFound } from './routes/errors.ts';
import { eventRoutes, type EventStreamOptions } from './routes/events.ts';
import { healthRoutes } from './routes/health.ts';
import { installRoutes, type InstallSources } from './routes/install.ts';
import { hostRoutes } from './routes/hosts.ts';
import { joinTokenRoutes } from './routes/join-tokens.ts';
import { agentRolloutRoutes } from './routes/agent-upgrades.ts';
import { auditRoutes } from './routes/audit.ts';
import { groupRoutes, hostTagRoutes } from './routes/groups.ts';
import { userRoutes } from './routes/users.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { sessionRoutes } from './routes/sessions.ts';
import { twoFactorRoutes } from './routes/two-factor.ts';
import { walletRoutes } from './routes/wallets.ts';
import { checkPasswordPolicy } from './services/users.ts';
import { changesAccess } from './services/access.ts';
import {
  clientAddress,
  contentSecurityPolicy,
  requestLog,
  requireCsrfToken,
  requireSession,
  sameOrigin,
  type CookieOptions,
} from './routes/middleware.ts';
import { createServices, type Services } from './services/index.ts';
import { permit } from './routes/permit.ts';
import { channelRoutes } from './channels/routes.ts';
import { processRoutes } from './routes/processes.ts';
import { processTemplateRoutes } from './routes/process-templates.ts';
import { fleetProcessRoutes } from './routes/fleet-processes.ts';
import { fleetMetricsRoutes, metricsRoutes } from './routes/metrics.ts';
import { prometheusRoutes } from './routes/prometheus.ts';
import { recordingRoutes } from './routes/recordings.ts';
import { proxyUserRoutes } from './routes/proxy-users.ts';
import { subscriptionRoutes } from './routes/subscriptions.ts';
import { hostProxyRoutes, proxyRoutes } from './routes/proxy-nodes.ts';
import { checkRoutes } from './routes/checks.ts';
import { alertRoutes } from './routes/alerts.ts';
import { jobRoutes } from './routes/jobs.ts';

/** Largest JSON body the API accepts. */
const MAX_BODY_BYTES = 64 * 1024;

/** What the HTTP app is built from. */
export interface AppDeps {
  /** The controller database (from `openDatabase`). */
  db: Db;
  bus: FleetBus;
  gateway: AgentGateway;
  /** `publicUrl` (cookie Secure flag, Origin check, enroll command) and the join token default TTL. */
  config: { publicUrl: string; joinTokenTtlSeconds: number };
  log: Logger;
  /** The controller key's fingerprint, which agents pin (printed in enroll commands). */
  controllerFingerprint: string;
  /** Resolves true when the controller can serve requests (database reachable); backs /readyz. */
  ready: () => boolean | Promise<boolean>;
  /** The console build (web/build); when set, non-API paths serve it with an index.html fallback. */
  webRoot?: string;
  /** Services built by the caller (to share them with the gateway); built from `db` otherwise. */
  services?: Services;
  /** Take the client address from X-Forwarded-For / X-Forwarded-Proto (behind a reverse proxy). */
  trustProxy?: boolean;
  /** SSE tuning (tests shorten the heartbeat): /events and /proxies/events share `heartbeatMs`. */
  events?: Partial<EventStreamOptions>;
  /** Where swagger-ui-dist's files are, when not resolvable from node_modules. */
  docsAssetsDir?: string;
  /** Where install.sh and the agent bundles are (default: beside the bundle or in the checkout). */
  installSources?: InstallSources;
}

function buildApi(deps: AppDeps, services: Services) {
  const cookie: CookieOptions = { publicUrl: deps.config.publicUrl, trustProxy: deps.trustProxy ?? false };
  const session = requireSession(services.auth, cookie);
  const csrf = requireCsrfToken();

  const api = createRouter();
  api.openAPIRegistry.registerComponent('securitySchemes', 'cookieAuth', {
    type: 'apiKey',
    in: 'cookie',
    name: 'keel_session',
    description: 'Set by POST /auth/login. Mutating requests also need the `x-csrf-token` header.',
  });
  api.use('*', async (c, next) => {
    await next();
    if (!c.res.headers.has('cache-control')) c.header('cache-control', 'no-store');
  });
  api.use('*', sameOrigin(deps.config.publicUrl));
  api.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new KeelError('request.too_large', `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
      },
    }),
  );

  // The mount list, the one place a path prefix is declared: each prefix's guard (session + CSRF,
  // or session only for /events) is declared in the chain right before its first mount, so no
  // route under it is matched before it. /auth has no guard: its routes check what they need.
  // (A guard is a chained `use`, not a per-router wrapper, so it runs once per request however
  // many routers share the prefix, and the chain keeps its types for `AppType`.)
  const routes = api
    .route(
      '/auth',
      authRoutes({ auth: services.auth, cookie, checkPasswordPolicy, wallets: services.wallets }),
    )
    .use('/hosts/*', session, csrf)
    .route('/hosts', hostRoutes({ hosts: services.hosts, events: services.hostEvents }))
    .route('/hosts', channelRoutes({ channels: services.channels }))
    .use('/recordings/*', session, csrf)
    .route('/recordings', recordingRoutes({ recordings: services.recordings }))
    .use('/proxy-users/*', session, csrf)
    .route('/proxy-users', proxyUserRoutes({ proxyUsers: services.proxyUsers }))
    .use('/jobs/*', session, csrf)
    .route(
      '/jobs',
      jobRoutes({ jobs: services.jobs, schedules: services.schedules, bus: deps.bus, auth: services.auth }),
    )
    .route('/hosts', processRoutes({ processes: services.processes }))
    .use('/process-templates/*', session, csrf)
    .route('/', processTemplateRoutes({ templates: services.processTemplates }))
    .use('/processes/*', session, csrf)
    .use('/logs/*', session, csrf)
    .route(
      '/',
      fleetProcessRoutes({
        fleet: services.fleetProcesses,
        logSearch: services.logSearch,
        logRetention: services.logRetention,
      }),
    )
    .route('/hosts', metricsRoutes({ metrics: services.metrics, traffic: services.traffic }))
    .use('/fleet/*', session, csrf)
    .route('/fleet', fleetMetricsRoutes({ metrics: services.metrics }))
    .route('/hosts', hostProxyRoutes({ proxyNodes: services.proxyNodes }))
    .use('/proxies/*', session, csrf)
    .route(
      '/proxies',
      proxyRoutes({
        proxyNodes: services.proxyNodes,
        auth: services.auth,
        heartbeatMs: deps.events?.heartbeatMs,
      }),
    )
    .use('/join-tokens/*', session, csrf)
    .route('/join-tokens', joinTokenRoutes({ joinTokens: services.joinTokens }))
    .use('/checks/*', session, csrf)
    .route('/checks', checkRoutes({ checks: services.checks }))
    .use('/alerts/*', session, csrf)
    .route('/alerts', alertRoutes({ alerts: services.alerts, notifications: services.notifications }))
    .use('/agent-rollouts/*', session, csrf)
    .route('/agent-rollouts', agentRolloutRoutes({ agentUpgrades: services.agentUpgrades }))
    .use('/audit/*', session, csrf)
    .route('/audit', auditRoutes({ audit: services.audit }))
    .use('/users/*', session, csrf)
    .route(
      '/users',
      userRoutes({ users: services.users, auth: services.auth, twoFactor: services.twoFactor }),
    )
    .use('/groups/*', session, csrf)
    .route('/groups', groupRoutes({ groups: services.groups }))
    .use('/host-tags/*', session, csrf)
    .route('/host-tags', hostTagRoutes({ groups: services.groups }))
    .use('/tokens/*', session, csrf)
    .route('/tokens', tokenRoutes({ tokens: services.tokens }))
    .use('/sessions/*', session, csrf)
    .route('/sessions', sessionRoutes({ auth: services.auth }))
    .use('/two-factor/*', session, csrf)
    .route('/two-factor', twoFactorRoutes({ twoFactor: services.twoFactor }))
    .use('/wallets/*', session, csrf)
    .route('/wallets', walletRoutes({ wallets: services.wallets, auth: services.auth }))
    .use('/events/*', session)
    .route(
      '/events',
      eventRoutes({
        bus: deps.bus,
        auth: services.auth,
        log: deps.log,
        options: deps.events,
        accessChanges: (listener) =>
          services.audit.watch((entry) => {
            if (changesAccess(entry.action)) listener();
          }),
      }),
    );

  api.get('/openapi.json', permit.public());
  api.doc31('/openapi.json', (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'Keel controller API',
      version: '1',
      description:
        'Fleet management API. Sign in with POST /auth/login; the session cookie authenticates the rest. Errors are always `{ "error": { "code", "message" } }`.',
    },
    servers: [{ url: `${new URL(c.req.url).origin}/api/v1` }],
  }));
  api.route('/', docsRoutes(deps.docsAssetsDir));
  return routes;
}

/**
 * Builds the HTTP app. Serve it with `@hono/node-server`.
 *
 * @example serve({ fetch: createApp({ db, bus, gateway, config, log, controllerFingerprint, ready }).fetch, port })
 */
export function createApp(deps: AppDeps) {
  const services =
    deps.services ??
    createServices({
      db: deps.db,
      bus: deps.bus,
      gateway: deps.gateway,
      log: deps.log,
      config: deps.config,
      controllerFingerprint: deps.controllerFingerprint,
    });

  const app = new Hono<AppEnv>();
  app.onError(errorHandler(deps.log));
  app.notFound(notFound);
  app.use('*', clientAddress({ trustProxy: deps.trustProxy ?? false }));
  app.use('*', requestLog(deps.log));
  app.use(
    '*',
    secureHeaders({
      // `undefined` would override the default (true) and drop the header over https.
      strictTransportSecurity: deps.config.publicUrl.startsWith('https:'),
      xFrameOptions: 'DENY',
    }),
  );
  app.use('*', contentSecurityPolicy());
  app.route('/', healthRoutes(deps.ready));
  app.route(
    '/',
    prometheusRoutes({
      prometheus: services.prometheus,
      session: requireSession(services.auth, {
        publicUrl: deps.config.publicUrl,
        trustProxy: deps.trustProxy ?? false,
      }),
    }),
  );
  app.route('/', subscriptionRoutes({ proxyUsers: services.proxyUsers }));
  app.route(
    '/',
    installRoutes({
      publicUrl: deps.config.publicUrl,
      controllerFingerprint: deps.controllerFingerprint,
      hostPresence: (id) =>
        services.hosts.get(id).then(
          (h) => ({ online: h.online, agentVersion: h.agentVersion }),
          (err: unknown) => {
            if (err instanceof KeelError && err.code === 'host.not_found') return null;
            throw err;
          },
        ),
      sources: deps.installSources,
    }),
  );
  const routes = app.route('/api/v1', buildApi(deps, services));
  if (deps.webRoot) {
    const spa = consoleRoutes(deps.webRoot);
    // The SPA never answers for API or agent paths: those 404 as JSON.
    app.use('*', async (c, next) => {
      const p = c.req.path;
      if (p === '/api' || p.startsWith('/api/') || p.startsWith('/agent/')) return next();
      const res = await spa.fetch(c.req.raw, c.env);
      if (res.status === 404) return next();
      return res;
    });
  }
  return routes;
}

/** The app's type, for typed clients (`hc<AppType>` from hono/client). */
export type AppType = ReturnType<typeof createApp>;
