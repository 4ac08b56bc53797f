// GET /api/v1/hosts/:id/metrics: one host's series over a time range as uPlot columnar arrays, at
// most two points per pixel of the chart's `width`; the service picks raw ticks, minute or hour
// roll-ups. Permission: host.view on the host. Also the supervised processes' series
// (GET /hosts/:id/metrics/processes) and the host's sampling interval (GET/PUT /metrics-settings).
import { createRoute, z } from '@hono/zod-openapi';
import { metricSeriesNames } from '@keel/shared';
import type { MetricsService } from '../services/metrics.ts';
import type { TrafficService } from '../services/traffic.ts';
import { authErrors, cookieSecurity, createRouter, errorResponse, idParamSchema, sessionOf } from './env.ts';
import { permit } from './permit.ts';

const epochMs = (description: string) =>
  z.coerce.number().int().min(0).optional().openapi({ type: 'integer', minimum: 0, description });

const metricsRangeSchema = z
  .object({
    resolution: z.enum(['raw', '1m', '1h']),
    stepMs: z.number().int(),
    from: z.number(),
    to: z.number(),
    series: z.array(z.string()),
    data: z.array(z.array(z.number().nullable())).openapi({
      description:
        'uPlot columns: `data[0]` bucket starts (epoch seconds), then one array per series (averages).',
    }),
  })
  .openapi('MetricsRange');

const rangeRoute = createRoute({
  method: 'get',
  path: '/{id}/metrics',
  middleware: [permit('host.view')] as const,
  tags: ['metrics'],
  summary: "A host's metrics over a time range",
  description:
    'Buckets of `max(resolution step, (to - from) / (2 * width))`: raw ticks while `from` is within their retention (48 h by default), then 1-minute (30 days) and 1-hour (1 year) roll-ups. Buckets without data are absent.',
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    query: z.object({
      from: epochMs('Start, epoch ms (default: an hour before `to`).'),
      to: epochMs('End (exclusive), epoch ms (default: now).'),
      width: z.coerce.number().int().min(1).max(10_000).default(1_000).openapi({
        type: 'integer',
        minimum: 1,
        maximum: 10_000,
        default: 1_000,
        description: 'Chart width in pixels: at most 2 points per pixel are returned.',
      }),
      series: z
        .string()
        .max(2_000)
        .optional()
        .openapi({
          description: `Comma-separated series (default: cpu, load1, mem_used, mem_total, disk_used_max_pct, net_rx_bps, net_tx_bps). Known: ${metricSeriesNames.join(', ')}.`,
        }),
    }),
  },
  responses: {
    200: { description: 'The series.', content: { 'application/json': { schema: metricsRangeSchema } } },
    400: errorResponse('Malformed id or query, unknown series (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const trafficSchema = z
  .object({
    hostId: z.string(),
    resetDay: z.number().int().openapi({ description: 'Day of the month the cycle resets on (UTC).' }),
    quotaBytes: z.number().int().nullable(),
    cycle: z
      .object({ start: z.number(), end: z.number() })
      .openapi({ description: 'Epoch ms, [start, end).' }),
    interfaces: z.array(z.object({ iface: z.string(), rxBytes: z.number(), txBytes: z.number() })),
    rxBytes: z.number(),
    txBytes: z.number(),
    totalBytes: z.number(),
    quotaUsedPct: z.number().nullable(),
  })
  .openapi('TrafficUsage');

const trafficRoute = createRoute({
  method: 'get',
  path: '/{id}/traffic',
  middleware: [permit('host.view')] as const,
  tags: ['metrics'],
  summary: "A host's transfer in its billing cycle",
  description:
    'Bytes received and sent per interface (loopback excluded) in the billing cycle holding `at` (default now). Cycles run from midnight UTC of the reset day; bytes are counted per UTC day from the interface counters, across counter resets, reboots and 32-bit wraps.',
  security: cookieSecurity,
  request: { params: idParamSchema, query: z.object({ at: epochMs('A time inside the cycle, epoch ms.') }) },
  responses: {
    200: { description: 'The cycle.', content: { 'application/json': { schema: trafficSchema } } },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const trafficPlanRoute = createRoute({
  method: 'put',
  path: '/{id}/traffic-plan',
  middleware: [permit('host.manage')] as const,
  tags: ['metrics'],
  summary: "Sets a host's billing cycle reset day and quota",
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: {
      content: {
        'application/json': {
          schema: z.strictObject({
            resetDay: z.number().int().min(1).max(31),
            quotaBytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).nullable(),
          }),
        },
      },
    },
  },
  responses: {
    200: {
      description: 'The current cycle under the new plan.',
      content: { 'application/json': { schema: trafficSchema } },
    },
    400: errorResponse('Malformed body (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const settingsSchema = z
  .object({
    hostId: z.string(),
    intervalSeconds: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "Seconds between ticks set for this host; null: the agent's own setting." }),
    appliedSeconds: z.number().int().nullable().openapi({
      description:
        'After a change: the interval the agent confirmed it uses now (null when it was offline; it gets the setting when it comes online).',
    }),
    bounds: z.object({ min: z.number().int(), max: z.number().int(), default: z.number().int() }),
  })
  .openapi('MetricsSettings');

const settingsRoute = createRoute({
  method: 'get',
  path: '/{id}/metrics-settings',
  middleware: [permit('host.view')] as const,
  tags: ['metrics'],
  summary: "A host's sampling interval",
  security: cookieSecurity,
  request: { params: idParamSchema },
  responses: {
    200: { description: 'The setting.', content: { 'application/json': { schema: settingsSchema } } },
    400: errorResponse('Malformed id (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const setSettingsRoute = createRoute({
  method: 'put',
  path: '/{id}/metrics-settings',
  middleware: [permit('host.manage')] as const,
  tags: ['metrics'],
  summary: "Sets a host's sampling interval",
  description:
    "Whole seconds from 1 to 60, or null for the agent's own setting (KEEL_AGENT_METRICS_INTERVAL, 5 s by default). The agent applies it from its next tick without a restart; an offline host gets it when it comes online. Audited as `host.metrics_settings`.",
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    body: {
      content: {
        'application/json': {
          schema: z.strictObject({ intervalSeconds: z.number().int().min(1).max(60).nullable() }),
        },
      },
    },
  },
  responses: {
    200: { description: 'The new setting.', content: { 'application/json': { schema: settingsSchema } } },
    400: errorResponse('Malformed id or body, interval out of bounds (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

const processMetricsSchema = z
  .object({
    resolution: z.enum(['raw', '1m', '1h']),
    stepMs: z.number().int(),
    from: z.number(),
    to: z.number(),
    processes: z.array(z.string()).openapi({ description: 'Process names, in column order.' }),
    cpu: z.array(z.array(z.number().nullable())).openapi({
      description:
        'uPlot columns: `cpu[0]` bucket starts (epoch seconds), then CPU % of one core per process.',
    }),
    rss: z.array(z.array(z.number().nullable())).openapi({
      description: 'uPlot columns: `rss[0]` bucket starts (epoch seconds), then resident bytes per process.',
    }),
  })
  .openapi('ProcessMetrics');

const processRangeRoute = createRoute({
  method: 'get',
  path: '/{id}/metrics/processes',
  middleware: [permit('host.view')] as const,
  tags: ['metrics'],
  summary: "A host's supervised processes' CPU and RSS over a time range",
  description:
    "Each supervised process's group CPU (% of one core) and resident memory, from the metrics ticks (raw, then minute and hour roll-ups, as for host series), at most two points per pixel of `width`.",
  security: cookieSecurity,
  request: {
    params: idParamSchema,
    query: z.object({
      from: epochMs('Start, epoch ms (default: an hour before `to`).'),
      to: epochMs('End (exclusive), epoch ms (default: now).'),
      width: z.coerce.number().int().min(1).max(10_000).default(1_000).openapi({
        type: 'integer',
        minimum: 1,
        maximum: 10_000,
        default: 1_000,
        description: 'Chart width in pixels.',
      }),
    }),
  },
  responses: {
    200: {
      description: 'The series.',
      content: { 'application/json': { schema: processMetricsSchema } },
    },
    400: errorResponse('Malformed id or query (`request.invalid`).'),
    ...authErrors,
    404: errorResponse('No such host (`host.not_found`).'),
  },
});

export function metricsRoutes({ metrics, traffic }: { metrics: MetricsService; traffic: TrafficService }) {
  return createRouter()
    .openapi(rangeRoute, async (c) => {
      const { id } = c.req.valid('param');
      const { from, to, width, series } = c.req.valid('query');
      const list = series
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      return c.json(await metrics.range(sessionOf(c).actor, id, { from, to, width, series: list }), 200);
    })
    .openapi(processRangeRoute, async (c) => {
      const { id } = c.req.valid('param');
      return c.json(await metrics.processRange(sessionOf(c).actor, id, c.req.valid('query')), 200);
    })
    .openapi(settingsRoute, async (c) => {
      const { id } = c.req.valid('param');
      return c.json(await metrics.settings(sessionOf(c).actor, id), 200);
    })
    .openapi(setSettingsRoute, async (c) => {
      const { id } = c.req.valid('param');
      const body = c.req.valid('json');
      return c.json(await metrics.setSettings(sessionOf(c).actor, id, body, c.get('clientIp')), 200);
    })
    .openapi(trafficRoute, async (c) => {
      const { id } = c.req.valid('param');
      return c.json(await traffic.view(sessionOf(c).actor, id, c.req.valid('query').at), 200);
    })
    .openapi(trafficPlanRoute, async (c) => {
      const { id } = c.req.valid('param');
      const body = c.req.valid('json');
      return c.json(await traffic.setPlan(sessionOf(c).actor, id, body, c.get('clientIp')), 200);
    });
}

const fleetMetricsSchema = z
  .object({
    from: z.number(),
    to: z.number(),
    stepMs: z.number().int(),
    x: z.array(z.number()).openapi({ description: 'Bucket starts (epoch seconds), shared by every host.' }),
    hosts: z.record(
      z.string(),
      z.object({
        cpu: z.array(z.number().nullable()).openapi({ description: 'CPU busy %, one per bucket.' }),
        mem: z.array(z.number().nullable()).openapi({ description: 'Memory used %, one per bucket.' }),
        latest: z
          .object({
            at: z.number(),
            cpu: z.number().nullable(),
            mem: z.number().nullable(),
            disk: z.number().nullable(),
            rx: z.number().nullable(),
            tx: z.number().nullable(),
          })
          .nullable()
          .openapi({ description: 'The newest tick of the last five minutes (null: none).' }),
      }),
    ),
  })
  .openapi('FleetMetrics');

const fleetMetricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  middleware: [permit('host.view')] as const,
  tags: ['metrics'],
  summary: 'Sparklines and newest figures of every host',
  description:
    'For each host the caller may view: CPU and memory % over the last hour in 2.5-minute buckets (from the minute roll-ups, one statement for the whole fleet) and the newest tick of the last five minutes (CPU %, memory %, fullest disk %, network bytes/s).',
  security: cookieSecurity,
  responses: {
    200: { description: 'The overview.', content: { 'application/json': { schema: fleetMetricsSchema } } },
    ...authErrors,
  },
});

/** GET /api/v1/fleet/metrics: the fleet overview's sparklines and figures (mounted at /fleet). */
export function fleetMetricsRoutes({ metrics }: { metrics: MetricsService }) {
  return createRouter().openapi(fleetMetricsRoute, async (c) =>
    c.json(await metrics.overview(sessionOf(c).actor), 200),
  );
}
