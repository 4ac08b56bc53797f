// /api/v1/alerts: alert rules and channels (monitoring.manage), silences and maintenance windows
// (monitoring.silence), alerts now and their history (monitoring.view). Channel secrets are
// write-only: answers carry `hasSecret`. Every change is audited. See docs/alerts.md.
import { createRoute, z } from '@hono/zod-openapi';
import type { AlertsService } from '../services/alerts.ts';
import { ruleKinds } from '../services/alerts.ts';
import type { NotificationsService } from '../services/notifications.ts';
import { channelKinds } from '../services/notifications.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const scopeSchema = z.object({ type: z.enum(['all', 'host', 'group']), id: z.uuid().optional() });

const ruleSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    kind: z.string(),
    params: z.record(z.string(), z.unknown()),
    scope: scopeSchema,
    severity: z.string(),
    forSeconds: z.number(),
    resolveForSeconds: z.number(),
    channelIds: z.array(z.uuid()),
    enabled: z.boolean(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('AlertRule');

const ruleBody = z
  .object({
    name: z.string().min(1).max(100),
    kind: z.enum(ruleKinds as [string, ...string[]]),
    params: z.record(z.string(), z.unknown()).optional().openapi({
      description:
        'metric: {series, comparator, threshold, resolveThreshold?, windowSeconds?}; host_offline: {}; process_down: {process?, mode?}; check_failing: {checkId?}; cert_expiry: {checkId?, days}; disk_forecast: {hours, lookbackHours?, minPoints?}',
    }),
    scope: scopeSchema.optional(),
    severity: z.enum(['info', 'warning', 'critical']).optional(),
    forSeconds: z.number().int().min(0).optional(),
    resolveForSeconds: z.number().int().min(0).optional(),
    channelIds: z.array(z.uuid()).max(20).optional(),
    enabled: z.boolean().optional(),
  })
  .openapi('AlertRuleBody');

const alertSchema = z
  .object({
    id: z.uuid(),
    ruleId: z.uuid(),
    ruleName: z.string(),
    kind: z.string(),
    severity: z.string(),
    subject: z.string(),
    hostId: z.uuid().nullable(),
    checkId: z.uuid().nullable(),
    state: z.enum(['pending', 'firing', 'resolved']),
    value: z.number().nullable(),
    summary: z.string(),
    silenced: z.boolean(),
    startedAt: z.string(),
    firedAt: z.string().nullable(),
    resolvedAt: z.string().nullable(),
    acknowledgedAt: z.string().nullable(),
    acknowledgedBy: z.string().nullable().openapi({ description: 'The user id that acknowledged it.' }),
  })
  .openapi('Alert');

const silenceSchema = z
  .object({
    id: z.uuid(),
    matchers: z.object({
      ruleId: z.string().optional(),
      hostId: z.string().optional(),
      kind: z.string().optional(),
    }),
    startsAt: z.string(),
    endsAt: z.string(),
    comment: z.string(),
    createdBy: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi('Silence');
const silenceBody = z
  .object({
    matchers: z
      .object({ ruleId: z.uuid().optional(), hostId: z.uuid().optional(), kind: z.string().optional() })
      .optional(),
    startsAt: z.string().optional(),
    endsAt: z.string(),
    comment: z.string().max(500).optional(),
  })
  .openapi('SilenceBody');

const maintenanceSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    scope: scopeSchema,
    startsAt: z.string(),
    durationMinutes: z.number(),
    recurrence: z.enum(['daily', 'weekly']).nullable(),
    activeNow: z.boolean(),
    createdAt: z.string(),
  })
  .openapi('MaintenanceWindow');
const maintenanceBody = z
  .object({
    name: z.string().min(1).max(100),
    scope: scopeSchema,
    startsAt: z.string(),
    durationMinutes: z.number().int().min(1),
    recurrence: z.enum(['daily', 'weekly']).nullable().optional(),
  })
  .openapi('MaintenanceBody');

const channelSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    kind: z.enum(channelKinds),
    config: z.record(z.string(), z.unknown()),
    hasSecret: z.boolean().openapi({ description: 'Whether a secret is stored (it is never returned).' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('NotificationChannel');
const channelBody = z
  .object({
    name: z.string().min(1).max(100),
    kind: z.enum(channelKinds),
    config: z.record(z.string(), z.unknown()).openapi({
      description:
        'webhook: {url}; telegram: {chatId, apiBaseUrl?}; ntfy: {topic, serverUrl?}; email: {host, port?, security?, username?, from, to[]}',
    }),
    secret: z.string().min(1).max(4096).nullable().optional().openapi({
      description: 'Webhook signing key, bot token, ntfy access token or SMTP password. Write-only.',
    }),
  })
  .openapi('NotificationChannelBody');

const deliverySchema = z.object({
  id: z.uuid(),
  channelId: z.uuid(),
  alertId: z.uuid().nullable(),
  event: z.string(),
  status: z.enum(['pending', 'sent', 'failed']),
  attempts: z.number(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  sentAt: z.string().nullable(),
  nextAttemptAt: z.string(),
});

const json = <T extends z.ZodType>(schema: T, description = 'OK.') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});
const bad = errorResponse('Malformed body (`request.invalid`).');
const tags = ['alerts'];
const on = (permission: 'monitoring.view' | 'monitoring.silence' | 'monitoring.manage') => ({
  tags,
  security: cookieSecurity,
  middleware: permit(permission),
});

const listAlertsRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/',
  summary: 'Alerts firing or pending now (`state=active`), or the history of alerts that fired',
  request: {
    query: z.object({
      state: z.enum(['active', 'history']).default('active'),
      limit: z.coerce.number().int().min(1).max(1_000).optional(),
      before: z.coerce.number().int().min(0).optional(),
    }),
  },
  responses: { 200: json(z.object({ alerts: z.array(alertSchema) })), ...authErrors },
});
const listRulesRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/rules',
  summary: 'Alert rules',
  responses: { 200: json(z.object({ rules: z.array(ruleSchema) })), ...authErrors },
});
const createRuleRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'post',
  path: '/rules',
  summary: 'Create an alert rule',
  request: body(ruleBody),
  responses: { 201: json(z.object({ rule: ruleSchema }), 'Created.'), 400: bad, ...authErrors },
});
const ruleNotFound = errorResponse('No such rule (`alert.rule_not_found`).');
const updateRuleRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'patch',
  path: '/rules/{id}',
  summary: 'Change an alert rule',
  request: { params: idParamSchema, ...body(ruleBody.partial()) },
  responses: { 200: json(z.object({ rule: ruleSchema })), 400: bad, ...authErrors, 404: ruleNotFound },
});
const deleteRuleRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'delete',
  path: '/rules/{id}',
  summary: 'Delete an alert rule and its alerts',
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...authErrors, 404: ruleNotFound },
});
const listSilencesRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/silences',
  summary: 'Silences',
  responses: { 200: json(z.object({ silences: z.array(silenceSchema) })), ...authErrors },
});
const createSilenceRoute = createRoute({
  ...on('monitoring.silence'),
  method: 'post',
  path: '/silences',
  summary: 'Silence alerts matching rule, host and kind until a time',
  request: body(silenceBody),
  responses: { 201: json(z.object({ silence: silenceSchema }), 'Created.'), 400: bad, ...authErrors },
});
const deleteSilenceRoute = createRoute({
  ...on('monitoring.silence'),
  method: 'delete',
  path: '/silences/{id}',
  summary: 'End a silence',
  request: { params: idParamSchema },
  responses: {
    204: { description: 'Deleted.' },
    ...authErrors,
    404: errorResponse('No such silence (`alert.silence_not_found`).'),
  },
});
const listMaintenanceRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/maintenance',
  summary: 'Maintenance windows',
  responses: { 200: json(z.object({ windows: z.array(maintenanceSchema) })), ...authErrors },
});
const createMaintenanceRoute = createRoute({
  ...on('monitoring.silence'),
  method: 'post',
  path: '/maintenance',
  summary: 'Create a maintenance window (a host, a group or all; once, daily or weekly)',
  request: body(maintenanceBody),
  responses: { 201: json(z.object({ window: maintenanceSchema }), 'Created.'), 400: bad, ...authErrors },
});
const deleteMaintenanceRoute = createRoute({
  ...on('monitoring.silence'),
  method: 'delete',
  path: '/maintenance/{id}',
  summary: 'Delete a maintenance window',
  request: { params: idParamSchema },
  responses: {
    204: { description: 'Deleted.' },
    ...authErrors,
    404: errorResponse('No such window (`alert.maintenance_not_found`).'),
  },
});
const listChannelsRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/channels',
  summary: 'Notification channels (secrets are never returned)',
  responses: { 200: json(z.object({ channels: z.array(channelSchema) })), ...authErrors },
});
const deliveriesRoute = createRoute({
  ...on('monitoring.view'),
  method: 'get',
  path: '/deliveries',
  summary: 'The latest notification deliveries and their outcome',
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).optional() }) },
  responses: { 200: json(z.object({ deliveries: z.array(deliverySchema) })), ...authErrors },
});
const createChannelRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'post',
  path: '/channels',
  summary: 'Create a notification channel',
  request: body(channelBody),
  responses: { 201: json(z.object({ channel: channelSchema }), 'Created.'), 400: bad, ...authErrors },
});
const channelNotFound = errorResponse('No such channel (`notification.channel_not_found`).');
const updateChannelRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'patch',
  path: '/channels/{id}',
  summary: 'Change a channel (`secret`: absent keeps it, null clears it)',
  request: { params: idParamSchema, ...body(channelBody.omit({ kind: true }).partial()) },
  responses: {
    200: json(z.object({ channel: channelSchema })),
    400: bad,
    ...authErrors,
    404: channelNotFound,
  },
});
const deleteChannelRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'delete',
  path: '/channels/{id}',
  summary: 'Delete a channel',
  request: { params: idParamSchema },
  responses: { 204: { description: 'Deleted.' }, ...authErrors, 404: channelNotFound },
});
const testChannelRoute = createRoute({
  ...on('monitoring.manage'),
  method: 'post',
  path: '/channels/{id}/test',
  summary: 'Send a test notification through a channel now',
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ ok: z.literal(true) })),
    ...authErrors,
    404: channelNotFound,
    502: errorResponse('Not delivered (`notification.failed`), with the reason.'),
  },
});

const acknowledgeRoute = createRoute({
  ...on('monitoring.silence'),
  method: 'post',
  path: '/{id}/acknowledge',
  summary: 'Acknowledge an active alert (someone is on it); audited, the first acknowledgement stays',
  request: { params: idParamSchema },
  responses: {
    200: json(z.object({ alert: alertSchema })),
    ...authErrors,
    404: errorResponse('No such active alert (`alert.not_found`).'),
  },
});

/** Alert routes (behind the session and CSRF middleware). */
export function alertRoutes({
  alerts,
  notifications,
}: {
  alerts: AlertsService;
  notifications: NotificationsService;
}) {
  type Ctx = Parameters<typeof sessionOf>[0];
  const actor = (c: Ctx) => sessionOf(c).actor;
  const ip = (c: Ctx) => c.get('clientIp');
  return createRouter()
    .openapi(listAlertsRoute, async (c) =>
      c.json({ alerts: await alerts.list(actor(c), c.req.valid('query')) }, 200),
    )
    .openapi(listRulesRoute, async (c) => c.json({ rules: await alerts.listRules(actor(c)) }, 200))
    .openapi(createRuleRoute, async (c) =>
      c.json({ rule: await alerts.createRule(actor(c), c.req.valid('json'), ip(c)) }, 201),
    )
    .openapi(updateRuleRoute, async (c) =>
      c.json(
        { rule: await alerts.updateRule(actor(c), c.req.valid('param').id, c.req.valid('json'), ip(c)) },
        200,
      ),
    )
    .openapi(deleteRuleRoute, async (c) => {
      await alerts.deleteRule(actor(c), c.req.valid('param').id, ip(c));
      return c.body(null, 204);
    })
    .openapi(listSilencesRoute, async (c) => c.json({ silences: await alerts.listSilences(actor(c)) }, 200))
    .openapi(createSilenceRoute, async (c) =>
      c.json({ silence: await alerts.createSilence(actor(c), c.req.valid('json'), ip(c)) }, 201),
    )
    .openapi(deleteSilenceRoute, async (c) => {
      await alerts.deleteSilence(actor(c), c.req.valid('param').id, ip(c));
      return c.body(null, 204);
    })
    .openapi(listMaintenanceRoute, async (c) =>
      c.json({ windows: await alerts.listMaintenance(actor(c)) }, 200),
    )
    .openapi(createMaintenanceRoute, async (c) =>
      c.json({ window: await alerts.createMaintenance(actor(c), c.req.valid('json'), ip(c)) }, 201),
    )
    .openapi(deleteMaintenanceRoute, async (c) => {
      await alerts.deleteMaintenance(actor(c), c.req.valid('param').id, ip(c));
      return c.body(null, 204);
    })
    .openapi(listChannelsRoute, async (c) => c.json({ channels: await notifications.list(actor(c)) }, 200))
    .openapi(deliveriesRoute, async (c) =>
      c.json({ deliveries: await notifications.deliveries(actor(c), c.req.valid('query').limit) }, 200),
    )
    .openapi(createChannelRoute, async (c) =>
      c.json({ channel: await notifications.create(actor(c), c.req.valid('json'), ip(c)) }, 201),
    )
    .openapi(updateChannelRoute, async (c) =>
      c.json(
        {
          channel: await notifications.update(actor(c), c.req.valid('param').id, c.req.valid('json'), ip(c)),
        },
        200,
      ),
    )
    .openapi(deleteChannelRoute, async (c) => {
      await notifications.remove(actor(c), c.req.valid('param').id, ip(c));
      return c.body(null, 204);
    })
    .openapi(testChannelRoute, async (c) =>
      c.json(await notifications.test(actor(c), c.req.valid('param').id, ip(c)), 200),
    )
    .openapi(acknowledgeRoute, async (c) =>
      c.json({ alert: await alerts.acknowledge(actor(c), c.req.valid('param').id, ip(c)) }, 200),
    );
}
