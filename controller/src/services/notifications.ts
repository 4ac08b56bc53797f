// Notification channels and delivery. Channels: webhook (JSON, HMAC-SHA256 signed), Telegram bot
// (sendMessage), ntfy (publish to a topic) and e-mail over SMTP (nodemailer). Each notification to
// each channel is a row of the outbox, sent by `deliverDue` and retried with exponential backoff
// (30 s, 1 min, 2 min, ... at most 1 h apart, 8 attempts) so a receiver that is down for a while
// still gets it; a controller restart loses nothing. Secrets (webhook key, bot token, ntfy token,
// SMTP password) are write-only: the API answers `hasSecret`, logs and stored errors never hold
// them (errors are built here from status codes and error codes, not from URLs). They are stored
// sealed under the master key (secrets.ts), bound to their channel, and opened only to send;
// `sealStoredSecrets` seals legacy plaintext rows (and rows of a retired key) at start.
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { KeelError } from '@keel/shared';
import type {
  ChannelInfo,
  ChannelWithSecret,
  DeliveryRow,
  NotificationsRepository,
} from '../repositories/notifications.ts';
import { resealStored, type SecretBox } from '../secrets.ts';
import type { AuditService } from './audit.ts';
import { requireAccess, type Actor } from './access.ts';

/** Channel kinds. */
export const channelKinds = ['webhook', 'telegram', 'ntfy', 'email'] as const;
export type ChannelKind = (typeof channelKinds)[number];

const httpUrl = z.url({ protocol: /^https?$/ }).max(2048);
const email = z.email().max(254);

/** The non-secret settings of each kind. */
export const channelConfigSchemas = {
  webhook: z.strictObject({ url: httpUrl }),
  telegram: z.strictObject({
    chatId: z
      .string()
      .max(64)
      .regex(/^(-?\d+|@[A-Za-z0-9_]{4,64})$/, 'a numeric chat id or @channelname'),
    /** The Bot API's base URL (a self-hosted Bot API server, or a stand-in in tests). */
    apiBaseUrl: httpUrl.default('https://api.telegram.org'),
  }),
  ntfy: z.strictObject({
    serverUrl: httpUrl.default('https://ntfy.sh'),
    topic: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-", at most 64'),
  }),
  email: z.strictObject({
    host: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[A-Za-z0-9.:_-]+$/, 'a host name or address'),
    port: z.number().int().min(1).max(65_535).default(587),
    /** `tls`: TLS from the start (465); `starttls`: upgrade required (587); `none`: plain (local relays only). */
    security: z.enum(['tls', 'starttls', 'none']).default('starttls'),
    username: z.string().max(254).optional(),
    from: email,
    to: z.array(email).min(1).max(20),
  }),
} as const;

/** A channel as the API creates it; `secret` is write-only. */
export const channelBodySchema = z.strictObject({
  name: z.string().trim().min(1).max(100),
  kind: z.enum(channelKinds),
  config: z.record(z.string(), z.unknown()),
  /** Webhook signing key, bot token, ntfy access token or SMTP password. */
  secret: z.string().min(1).max(4096).nullable().optional(),
});

/** What a notification says (the webhook body; the other kinds render it as text). */
export interface NotificationPayload {
  version: 1;
  event: 'firing' | 'resolved' | 'test';
  alert: {
    id: string | null;
    rule: { id: string | null; name: string; kind: string; severity: string };
    subject: string;
    hostId: string | null;
    hostName: string | null;
    checkId: string | null;
    state: string;
    value: number | null;
    summary: string;
    startedAt: string | null;
    firedAt: string | null;
    resolvedAt: string | null;
  };
  url: string | null;
}

/** Retry schedule. */
export interface RetryPolicy {
  /** First delay, ms (doubles each attempt). */
  baseMs: number;
  maxMs: number;
  maxAttempts: number;
}
export const defaultRetry: RetryPolicy = { baseMs: 30_000, maxMs: 3_600_000, maxAttempts: 8 };

/** Delay before attempt `attempts + 1` after `attempts` failures. */
export function backoffMs(attempts: number, policy: RetryPolicy): number {
  return Math.min(policy.baseMs * 2 ** Math.max(0, attempts - 1), policy.maxMs);
}

/**
 * The webhook signature: hex HMAC-SHA256 of `<timestamp>.<body>` under the channel's secret, sent
 * as `X-Keel-Signature: sha256=<hex>` beside `X-Keel-Timestamp: <unix seconds>`.
 *
 * @example
 * const expected = signWebhook(secret, req.headers['x-keel-timestamp'], rawBody);
 * crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(req.headers['x-keel-signature']));
 */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** One line of text for chat and push channels. */
export function renderText(p: NotificationPayload): string {
  const head = p.event === 'test' ? 'TEST' : p.event === 'firing' ? 'FIRING' : 'RESOLVED';
  const where = p.alert.hostName ? ` on ${p.alert.hostName}` : '';
  return `[${head}] ${p.alert.rule.name}${where}: ${p.alert.summary}`;
}

class DeliveryError extends Error {}

async function post(url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    // fetch's message is generic; its cause's code names the network error without the URL.
    const cause = (err as { cause?: { code?: string } }).cause;
    const what =
      err instanceof Error && err.name === 'TimeoutError' ? 'timed out' : (cause?.code ?? 'network error');
    throw new DeliveryError(`could not reach the receiver (${what})`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status < 200 || res.status >= 300)
    throw new DeliveryError(`the receiver answered HTTP ${res.status}`);
  return res;
}

/** Sends one payload through one channel (with its secret); throws DeliveryError on failure. */
export async function sendThrough(
  channel: { id: string; kind: string; config: Record<string, unknown>; secret: string | null },
  payload: NotificationPayload,
  opts: { deliveryId: string; now: number; timeoutMs?: number },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  switch (channel.kind as ChannelKind) {
    case 'webhook': {
      const config = channelConfigSchemas.webhook.parse(channel.config);
      const body = JSON.stringify(payload);
      const timestamp = String(Math.floor(opts.now / 1000));
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'keel-controller',
        'x-keel-event': payload.event,
        'x-keel-delivery': opts.deliveryId,
        'x-keel-timestamp': timestamp,
      };
      if (channel.secret) headers['x-keel-signature'] = signWebhook(channel.secret, timestamp, body);
      await post(config.url, { method: 'POST', headers, body }, timeoutMs);
      return;
    }
    case 'telegram': {
      const config = channelConfigSchemas.telegram.parse(channel.config);
      if (!channel.secret) throw new DeliveryError('the channel has no bot token');
      const base = config.apiBaseUrl.replace(/\/+$/, '');
      await post(
        `${base}/bot${channel.secret}/sendMessage`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            chat_id: config.chatId,
            text: renderText(payload),
            disable_web_page_preview: true,
          }),
        },
        timeoutMs,
      );
      return;
    }
    case 'ntfy': {
      const config = channelConfigSchemas.ntfy.parse(channel.config);
      const headers: Record<string, string> = {
        'content-type': 'text/plain; charset=utf-8',
        title: `Keel: ${payload.alert.rule.name}`.replace(/[^\x20-\x7e]/g, '?').slice(0, 200),
        priority: payload.event === 'firing' && payload.alert.rule.severity === 'critical' ? '5' : '3',
        tags:
          payload.event === 'resolved'
            ? 'white_check_mark'
            : payload.event === 'firing'
              ? 'warning'
              : 'test_tube',
      };
      if (channel.secret) headers.authorization = `Bearer ${channel.secret}`;
      await post(
        `${config.serverUrl.replace(/\/+$/, '')}/${config.topic}`,
        { method: 'POST', headers, body: renderText(payload) },
        timeoutMs,
      );
      return;
    }
    case 'email': {
      const config = channelConfigSchemas.email.parse(channel.config);
      const { createTransport } = await import('nodemailer');
      const transport = createTransport({
        host: config.host,
        port: config.port,
        secure: config.security === 'tls',
        requireTLS: config.security === 'starttls',
        ignoreTLS: config.security === 'none',
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
        ...(config.username && channel.secret
          ? { auth: { user: config.username, pass: channel.secret } }
          : {}),
      });
      try {
        await transport.sendMail({
          from: config.from,
          to: config.to,
          subject: renderText(payload).slice(0, 200),
          text: `${renderText(payload)}\n\n${JSON.stringify(payload, null, 2)}\n`,
          headers: { 'X-Keel-Delivery': opts.deliveryId },
        });
      } catch (err) {
        const e = err as { code?: string; responseCode?: number };
        throw new DeliveryError(`the SMTP server refused or failed (${e.responseCode ?? e.code ?? 'error'})`);
      } finally {
        transport.close();
      }
      return;
    }
    default:
      throw new DeliveryError(`unknown channel kind ${channel.kind}`);
  }
}

function parseChannel(kind: ChannelKind, config: unknown): Record<string, unknown> {
  const parsed = channelConfigSchemas[kind].safeParse(config);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new KeelError('request.invalid', `config.${first.path.join('.')}: ${first.message}`);
  }
  return parsed.data as Record<string, unknown>;
}

export interface NotificationsServiceDeps {
  notifications: NotificationsRepository;
  audit: AuditService;
  log: Logger;
  now?: () => number;
  retry?: RetryPolicy;
  /** The console's URL, linked from notifications. */
  publicUrl?: string;
  /** Seals the channels' secrets at rest. */
  secrets: SecretBox;
}

/** What a channel's sealed secret is bound to: a sealed value copied to another row does not open. */
const secretContext = (channelId: string) => `notification_channels.secret:${channelId}`;

export function createNotificationsService(deps: NotificationsServiceDeps) {
  const { notifications: repo, audit, log } = deps;
  const now = deps.now ?? Date.now;
  const retry = deps.retry ?? deps.retry ?? defaultRetry;
  let delivering: Promise<number> | null = null;

  /** The channel with its secret opened: only the sender and the test-send do this. */
  function opened(channel: ChannelWithSecret): ChannelWithSecret {
    if (!channel.secret) return channel;
    try {
      return { ...channel, secret: deps.secrets.open(channel.secret, secretContext(channel.id)) };
    } catch {
      throw new DeliveryError('the channel secret cannot be opened with the master key');
    }
  }

  async function attempt(row: DeliveryRow): Promise<void> {
    const channel = await repo.getWithSecret(row.channelId);
    const at = now();
    if (!channel) return repo.settle(row.id, { status: 'failed', lastError: 'the channel was deleted' });
    try {
      await sendThrough(opened(channel), row.payload as unknown as NotificationPayload, {
        deliveryId: row.id,
        now: at,
      });
      await repo.settle(row.id, {
        status: 'sent',
        attempts: row.attempts + 1,
        sentAt: new Date(at),
        lastError: null,
      });
    } catch (err) {
      const message = err instanceof DeliveryError ? err.message : 'the channel is misconfigured';
      const attempts = row.attempts + 1;
      const giveUp = attempts >= retry.maxAttempts;
      await repo.settle(row.id, {
        attempts,
        lastError: message,
        status: giveUp ? 'failed' : 'pending',
        nextAttemptAt: new Date(at + backoffMs(attempts, retry)),
      });
      log.warn(
        { channel: channel.id, kind: channel.kind, delivery: row.id, attempts, giveUp, error: message },
        'notification not delivered',
      );
    }
  }

  const view = (c: ChannelInfo) => ({
    id: c.id,
    name: c.name,
    kind: c.kind,
    config: c.config,
    hasSecret: c.hasSecret,
    createdAt: c.createdAt.toISOString(),
    updatedAt: c.updatedAt.toISOString(),
  });

  return {
    /** Queues `payload` to each channel (unknown ids are skipped); sent by the next `deliverDue`. */
    async enqueue(
      channelIds: readonly string[],
      alertId: string | null,
      payload: NotificationPayload,
    ): Promise<void> {
      const at = new Date(now());
      await repo.enqueue(
        channelIds.map((channelId) => ({
          channelId,
          alertId,
          event: payload.event,
          payload: payload as unknown as Record<string, unknown>,
          nextAttemptAt: at,
        })),
      );
    },

    /** Sends every delivery that is due (one pass; concurrent calls share it). Returns attempts made. */
    deliverDue(): Promise<number> {
      delivering ??= (async () => {
        const rows = await repo.due(new Date(now()), 100);
        await Promise.all(rows.map((r) => attempt(r)));
        return rows.length;
      })().finally(() => (delivering = null));
      return delivering;
    },

    async list(actor: Actor) {
      requireAccess(actor, 'monitoring.view');
      return (await repo.listChannels()).map(view);
    },

    async deliveries(actor: Actor, limit = 100) {
      requireAccess(actor, 'monitoring.view');
      return (await repo.recent(Math.min(Math.max(limit, 1), 500))).map((d) => ({
        id: d.id,
        channelId: d.channelId,
        alertId: d.alertId,
        event: d.event,
        status: d.status,
        attempts: d.attempts,
        lastError: d.lastError,
        createdAt: d.createdAt.toISOString(),
        sentAt: d.sentAt?.toISOString() ?? null,
        nextAttemptAt: d.nextAttemptAt.toISOString(),
      }));
    },

    async create(actor: Actor, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.manage');
      const parsed = channelBodySchema.safeParse(body);
      if (!parsed.success) {
        const first = parsed.error.issues[0]!;
        throw new KeelError('request.invalid', `${first.path.join('.') || 'body'}: ${first.message}`);
      }
      const { name, kind, secret } = parsed.data;
      const config = parseChannel(kind, parsed.data.config);
      if (kind === 'telegram' && !secret)
        throw new KeelError('request.invalid', 'secret: the bot token is required.');
      const id = randomUUID();
      const sealed = secret ? deps.secrets.seal(secret, secretContext(id)) : null;
      const row = await repo.createChannel({ id, name, kind, config, secret: sealed });
      // The secret is never in the audit detail: only whether one was set.
      await audit.record(
        actor.id,
        'notification.channel.create',
        `channel:${row.id}`,
        { name, kind, secretSet: Boolean(secret) },
        ip,
      );
      return view(row);
    },

    async update(actor: Actor, id: string, body: unknown, ip: string | null = null) {
      requireAccess(actor, 'monitoring.manage');
      const current = await repo.getChannel(id);
      if (!current) throw new KeelError('notification.channel_not_found');
      const parsed = channelBodySchema.omit({ kind: true }).partial().safeParse(body);
      if (!parsed.success) {
        const first = parsed.error.issues[0]!;
        throw new KeelError('request.invalid', `${first.path.join('.') || 'body'}: ${first.message}`);
      }
      const patch: Parameters<typeof repo.updateChannel>[1] = {};
      if (parsed.data.name !== undefined) patch.name = parsed.data.name;
      if (parsed.data.config !== undefined) patch.config = parseChannel(current.kind, parsed.data.config);
      if (parsed.data.secret !== undefined)
        patch.secret = parsed.data.secret ? deps.secrets.seal(parsed.data.secret, secretContext(id)) : null;
      const row = await repo.updateChannel(id, patch);
      if (!row) throw new KeelError('notification.channel_not_found');
      await audit.record(
        actor.id,
        'notification.channel.update',
        `channel:${id}`,
        {
          changed: Object.keys(patch).filter((k) => k !== 'secret'),
          secretChanged: parsed.data.secret !== undefined,
        },
        ip,
      );
      return view(row);
    },

    async remove(actor: Actor, id: string, ip: string | null = null): Promise<void> {
      requireAccess(actor, 'monitoring.manage');
      const row = await repo.deleteChannel(id);
      if (!row) throw new KeelError('notification.channel_not_found');
      await audit.record(actor.id, 'notification.channel.delete', `channel:${id}`, { name: row.name }, ip);
    },

    /** Sends a test notification now (one attempt, not queued); 502 `notification.failed` says why. */
    async test(actor: Actor, id: string, ip: string | null = null): Promise<{ ok: true }> {
      requireAccess(actor, 'monitoring.manage');
      const channel = await repo.getWithSecret(id);
      if (!channel) throw new KeelError('notification.channel_not_found');
      const at = now();
      const payload: NotificationPayload = {
        version: 1,
        event: 'test',
        alert: {
          id: null,
          rule: { id: null, name: 'Test notification', kind: 'test', severity: 'info' },
          subject: 'test',
          hostId: null,
          hostName: null,
          checkId: null,
          state: 'firing',
          value: null,
          summary: `A test from Keel to the channel "${channel.name}".`,
          startedAt: new Date(at).toISOString(),
          firedAt: new Date(at).toISOString(),
          resolvedAt: null,
        },
        url: deps.publicUrl ? `${deps.publicUrl.replace(/\/+$/, '')}/alerts` : null,
      };
      let error: string | null = null;
      try {
        await sendThrough(opened(channel), payload, { deliveryId: randomUUID(), now: at });
      } catch (err) {
        error = err instanceof DeliveryError ? err.message : 'the channel is misconfigured';
      }
      await audit.record(
        actor.id,
        'notification.channel.test',
        `channel:${id}`,
        { ok: error === null, error },
        ip,
      );
      if (error) throw new KeelError('notification.failed', `The test was not delivered: ${error}.`);
      return { ok: true };
    },

    /**
     * Seals every channel secret still stored in plaintext (written before secrets were sealed) or
     * under a retired master key; returns how many rows were rewritten. Run at start.
     */
    sealStoredSecrets: async (): Promise<number> =>
      resealStored(
        deps.secrets,
        await repo.storedSecrets(),
        (row) => row.secret,
        (row) => secretContext(row.id),
        (row, sealed) => repo.resealSecret(row.id, row.secret, sealed),
      ),

    /** Forgets deliveries older than `before`. */
    prune: (before: Date) => repo.prune(before),
  };
}

export type NotificationsService = ReturnType<typeof createNotificationsService>;
