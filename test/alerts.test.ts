// Proves alert rules end to end through the API on a real database, with an injected clock (no
// sleeps): a metric rule goes pending, fires only after its duration, stays firing between the
// fire and resolve thresholds and resolves only after the value has been clear for the resolve
// duration (hysteresis); its webhook is refused twice by the receiver, retried with backoff and
// arrives signed (the receiver checks the HMAC); a silence keeps a firing alert quiet; the disk
// forecast fires on a synthetic rising series and not on a flat one; Telegram and ntfy test
// notifications reach local HTTP stand-ins of their APIs, and e-mail reaches a real local SMTP
// server (smtp-server); channel secrets are never returned by the API nor written to the log.
import assert from 'node:assert/strict';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { SMTPServer } from 'smtp-server';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { notificationChannels } from '../controller/src/db/schema/alerts.ts';
import { metricSamples } from '../controller/src/db/schema/metrics.ts';
import { SEALED_PREFIX } from '../controller/src/secrets.ts';

const T0 = Date.parse('2026-03-01T12:00:00Z');
let clock = T0;
let t: TestApp;
let owner: SignedIn;
let hostId: string;
let diskHost: string;

/** A local HTTP receiver that records requests and answers from a script. */
interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}
function receiver(answer: (r: Received, n: number) => number) {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = {
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      got.push(r);
      res.statusCode = answer(r, got.length);
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    });
  });
  return {
    got,
    server,
    async url() {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
  };
}
const servers: Server[] = [];

const enrollHost = (name: string) => t.enrollHost(name);

async function api<T = Record<string, unknown>>(method: string, path: string, json?: unknown) {
  const res = await t.request(`/api/v1${path}`, {
    method,
    as: owner,
    ...(json !== undefined ? { json } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

/** Stores one tick for a host at `at` with the given values. */
async function sample(host: string, at: number, v: { cpu?: number; disk_used_max_pct?: number }) {
  await t.db
    .insert(metricSamples)
    .values({ hostId: host, ts: new Date(at), ...v })
    .onConflictDoNothing();
}

interface AlertView {
  id: string;
  state: string;
  value: number | null;
  silenced: boolean;
  ruleId: string;
  summary: string;
}
const activeAlerts = async () =>
  (await api<{ alerts: AlertView[] }>('GET', '/alerts?state=active')).body.alerts;

before(async () => {
  t = await openTestApp({ now: () => new Date(clock) });
  owner = await t.signInAs('owner');
  hostId = await enrollHost('game-1');
  diskHost = await enrollHost('files-1');
});
after(async () => {
  for (const s of servers) s.close();
  await t.close();
});

describe('a metric rule with a webhook', () => {
  test('fires after its duration, is delivered signed after two refusals, resolves with hysteresis', async () => {
    const secret = 'whsec-' + randomBytes(12).toString('hex');
    const hook = receiver((_r, n) => (n <= 2 ? 500 : 200));
    servers.push(hook.server);
    const made = await api<{ channel: { id: string; hasSecret: boolean } }>('POST', '/alerts/channels', {
      name: 'ops hook',
      kind: 'webhook',
      config: { url: `${await hook.url()}/keel` },
      secret,
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.channel.hasSecret, true);
    assert.ok(!JSON.stringify(made.body).includes(secret), 'the secret is not answered back');
    const channelId = made.body.channel.id;

    const rule = await api<{ rule: { id: string } }>('POST', '/alerts/rules', {
      name: 'CPU hot',
      kind: 'metric',
      params: { series: 'cpu', comparator: '>', threshold: 90, resolveThreshold: 70, windowSeconds: 10 },
      scope: { type: 'host', id: hostId },
      forSeconds: 60,
      resolveForSeconds: 60,
      channelIds: [channelId],
      severity: 'critical',
    });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    const ruleId = rule.body.rule.id;
    const alerts = t.services.alerts;
    const step = async (dt: number, cpu: number) => {
      clock += dt;
      await sample(hostId, clock - 2_000, { cpu });
      await alerts.evaluate(clock);
    };

    await step(0, 95);
    let active = await activeAlerts();
    assert.equal(active.length, 1);
    assert.equal(active[0]!.state, 'pending');
    await step(30_000, 96);
    assert.equal((await activeAlerts())[0]!.state, 'pending', 'not yet: 30 s of 60');
    await step(31_000, 97);
    active = await activeAlerts();
    assert.equal(active[0]!.state, 'firing', 'fires once the condition held 60 s');
    assert.equal(active[0]!.ruleId, ruleId);

    // Delivery: refused, refused, then accepted, each after the backoff.
    assert.equal(await t.services.notifications.deliverDue(), 1);
    assert.equal(hook.got.length, 1);
    assert.equal(await t.services.notifications.deliverDue(), 0, 'not due again before the backoff');
    clock += 30_000;
    await t.services.notifications.deliverDue();
    assert.equal(hook.got.length, 2);
    clock += 30_000;
    assert.equal(await t.services.notifications.deliverDue(), 0, 'second backoff is 60 s');
    clock += 30_000;
    await t.services.notifications.deliverDue();
    assert.equal(hook.got.length, 3);
    const ids = new Set(hook.got.map((r) => r.headers['x-keel-delivery']));
    assert.equal(ids.size, 1, 'one delivery id across retries (receivers can de-duplicate)');
    for (const r of hook.got) {
      const ts = String(r.headers['x-keel-timestamp']);
      const expected = `sha256=${createHmac('sha256', secret).update(`${ts}.${r.body}`).digest('hex')}`;
      const sig = String(r.headers['x-keel-signature']);
      assert.equal(sig.length, expected.length);
      assert.ok(timingSafeEqual(Buffer.from(sig), Buffer.from(expected)), 'the HMAC verifies');
      const wrong = createHmac('sha256', 'not-the-secret').update(`${ts}.${r.body}`).digest('hex');
      assert.notEqual(sig, `sha256=${wrong}`);
    }
    const payload = JSON.parse(hook.got[2]!.body) as {
      event: string;
      alert: { rule: { name: string }; hostName: string };
    };
    assert.equal(payload.event, 'firing');
    assert.equal(payload.alert.rule.name, 'CPU hot');
    assert.equal(payload.alert.hostName, 'game-1');
    const deliveries = await api<{ deliveries: { status: string; attempts: number }[] }>(
      'GET',
      '/alerts/deliveries',
    );
    assert.deepEqual(
      deliveries.body.deliveries.map((d) => [d.status, d.attempts]),
      [['sent', 3]],
    );

    // Hysteresis: 80 is below the fire threshold but above the resolve one: still firing.
    await step(10_000, 80);
    assert.equal((await activeAlerts())[0]!.state, 'firing');
    await step(10_000, 60); // clear spell starts
    await step(40_000, 60);
    assert.equal((await activeAlerts())[0]!.state, 'firing', '40 s clear of 60');
    await step(10_000, 85); // interrupted: the spell starts again
    await step(10_000, 60);
    await step(50_000, 60);
    assert.equal((await activeAlerts())[0]!.state, 'firing', 'the interrupted spell restarted');
    await step(11_000, 60);
    assert.equal((await activeAlerts()).length, 0, 'resolved after 60 s clear');
    const history = await api<{ alerts: AlertView[] }>('GET', '/alerts?state=history');
    assert.equal(history.body.alerts.length, 1);
    assert.equal(history.body.alerts[0]!.state, 'resolved');
    await t.services.notifications.deliverDue();
    assert.equal(JSON.parse(hook.got.at(-1)!.body).event, 'resolved');

    // Silenced: the next firing is marked silenced and sends nothing.
    const silence = await api('POST', '/alerts/silences', {
      matchers: { ruleId },
      endsAt: new Date(clock + 3_600_000).toISOString(),
      comment: 'load test',
    });
    assert.equal(silence.status, 201, JSON.stringify(silence.body));
    const sent = hook.got.length;
    await step(20_000, 99); // the window (10 s) holds only hot ticks from here
    await step(61_000, 99);
    active = await activeAlerts();
    assert.equal(active[0]!.state, 'firing');
    assert.equal(active[0]!.silenced, true);
    clock += 3_600_000;
    await t.services.notifications.deliverDue();
    assert.equal(hook.got.length, sent, 'nothing sent for a silenced alert');
    assert.ok(!t.logLines.join('').includes(secret), 'the webhook secret is never logged');

    const audit = (await api<{ entries: { action: string }[] }>('GET', '/audit?limit=100')).body.entries.map(
      (e) => e.action,
    );
    for (const a of ['notification.channel.create', 'alert.rule.create', 'alert.silence.create']) {
      assert.ok(audit.includes(a), a);
    }
  });
});

describe('disk full forecast', () => {
  test('a rising synthetic series fires within the horizon; a flat one does not', async () => {
    // 1 % per hour from 50 % over the last 6 h: at 56 % now, full in 44 h.
    const start = clock - 6 * 3_600_000;
    for (let i = 0; i <= 72; i++) {
      await sample(diskHost, start + i * 300_000, { disk_used_max_pct: 50 + (i * 300_000) / 3_600_000 });
      await sample(hostId, start + i * 300_000 + 1, { disk_used_max_pct: 40 });
    }
    const mk = (hours: number) =>
      api<{ rule: { id: string } }>('POST', '/alerts/rules', {
        name: `disk full in ${hours} h`,
        kind: 'disk_forecast',
        params: { hours, lookbackHours: 6 },
        forSeconds: 0,
      });
    const within48 = (await mk(48)).body.rule.id;
    const within24 = (await mk(24)).body.rule.id;
    await t.services.alerts.evaluate(clock);
    const active = await activeAlerts();
    const fired = active.filter((a) => a.ruleId === within48);
    assert.equal(fired.length, 1, JSON.stringify(active));
    assert.equal(fired[0]!.state, 'firing');
    assert.ok(Math.abs(fired[0]!.value! - 44) < 0.5, `about 44 h left, got ${fired[0]!.value}`);
    assert.equal(active.filter((a) => a.ruleId === within24).length, 0, '44 h is beyond 24 h');
  });
});

describe('channels', () => {
  test('Telegram and ntfy test notifications reach local stand-ins of their HTTP APIs', async () => {
    const token = `123456:${randomBytes(16).toString('hex')}`;
    const telegram = receiver(() => 200); // stand-in for api.telegram.org
    const ntfy = receiver(() => 200); // stand-in for an ntfy server
    servers.push(telegram.server, ntfy.server);
    const tg = await api<{ channel: { id: string } }>('POST', '/alerts/channels', {
      name: 'telegram ops',
      kind: 'telegram',
      config: { chatId: '-100200300', apiBaseUrl: await telegram.url() },
      secret: token,
    });
    assert.equal(tg.status, 201, JSON.stringify(tg.body));
    const nt = await api<{ channel: { id: string } }>('POST', '/alerts/channels', {
      name: 'ntfy phone',
      kind: 'ntfy',
      config: { serverUrl: await ntfy.url(), topic: 'keel-alerts' },
      secret: 'tk_ntfyaccess',
    });
    assert.equal(nt.status, 201, JSON.stringify(nt.body));
    assert.equal((await api('POST', `/alerts/channels/${tg.body.channel.id}/test`)).status, 200);
    assert.equal((await api('POST', `/alerts/channels/${nt.body.channel.id}/test`)).status, 200);

    assert.equal(telegram.got.length, 1);
    assert.equal(telegram.got[0]!.url, `/bot${token}/sendMessage`);
    const msg = JSON.parse(telegram.got[0]!.body) as { chat_id: string; text: string };
    assert.equal(msg.chat_id, '-100200300');
    assert.match(msg.text, /^\[TEST\] Test notification/);
    assert.equal(ntfy.got.length, 1);
    assert.equal(ntfy.got[0]!.url, '/keel-alerts');
    assert.equal(ntfy.got[0]!.headers.authorization, 'Bearer tk_ntfyaccess');
    assert.match(ntfy.got[0]!.body, /\[TEST\]/);

    const list = await api<{ channels: { hasSecret: boolean }[] }>('GET', '/alerts/channels');
    const text = JSON.stringify(list.body);
    assert.ok(!text.includes(token) && !text.includes('tk_ntfyaccess'), 'secrets are write-only');
    assert.ok(!t.logLines.join('').includes(token), 'the bot token is never logged');

    // A receiver that refuses: 502 notification.failed with the reason, no secret in it.
    const refusing = receiver(() => 403);
    servers.push(refusing.server);
    const bad = await api<{ channel: { id: string } }>('POST', '/alerts/channels', {
      name: 'refusing',
      kind: 'telegram',
      config: { chatId: '42', apiBaseUrl: await refusing.url() },
      secret: token,
    });
    const res = await api<{ error: { code: string; message: string } }>(
      'POST',
      `/alerts/channels/${bad.body.channel.id}/test`,
    );
    assert.equal(res.status, 502);
    assert.equal(res.body.error.code, 'notification.failed');
    assert.match(res.body.error.message, /HTTP 403/);
    assert.ok(!res.body.error.message.includes(token));
  });

  test('e-mail reaches a real local SMTP server (smtp-server), authenticated', async () => {
    const mails: { from: string; to: string[]; data: string; user: string }[] = [];
    const smtp = new SMTPServer({
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, _session, cb) {
        if (auth.username === 'keel' && auth.password === 'smtp-pass-123') cb(null, { user: auth.username });
        else cb(new Error('bad credentials'));
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks).toString(),
            user: String(session.user),
          });
          cb();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
    const port = (smtp.server.address() as AddressInfo).port;
    try {
      const made = await api<{ channel: { id: string } }>('POST', '/alerts/channels', {
        name: 'mail ops',
        kind: 'email',
        config: {
          host: '127.0.0.1',
          port,
          security: 'none',
          username: 'keel',
          from: 'keel@example.test',
          to: ['ops@example.test'],
        },
        secret: 'smtp-pass-123',
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const res = await api('POST', `/alerts/channels/${made.body.channel.id}/test`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(mails.length, 1);
      assert.equal(mails[0]!.from, 'keel@example.test');
      assert.deepEqual(mails[0]!.to, ['ops@example.test']);
      assert.equal(mails[0]!.user, 'keel');
      assert.match(mails[0]!.data, /^X-Keel-Delivery: [0-9a-f-]{36}/m);
      assert.match(mails[0]!.data, /^Subject: .*TEST.*Test.notification/m, mails[0]!.data.slice(0, 600));

      // A wrong password: refused by the server, 502 with the SMTP code.
      await api('PATCH', `/alerts/channels/${made.body.channel.id}`, { secret: 'wrong' });
      const refused = await api<{ error: { code: string } }>(
        'POST',
        `/alerts/channels/${made.body.channel.id}/test`,
      );
      assert.equal(refused.status, 502);
      assert.equal(refused.body.error.code, 'notification.failed');
    } finally {
      await new Promise<void>((r) => smtp.close(() => r()));
    }
  });

  test('channel secrets are sealed at rest; a legacy plaintext row still delivers and is sealed at start', async () => {
    const ntfy = receiver(() => 200);
    servers.push(ntfy.server);
    const secret = 'tk_' + randomBytes(12).toString('hex');
    const made = await api<{ channel: { id: string; hasSecret: boolean } }>('POST', '/alerts/channels', {
      name: 'ntfy sealed',
      kind: 'ntfy',
      config: { serverUrl: await ntfy.url(), topic: 'keel-sealed' },
      secret,
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.channel.hasSecret, true);
    const id = made.body.channel.id;
    const stored = async () =>
      (await t.db.select().from(notificationChannels).where(eq(notificationChannels.id, id)))[0]!.secret!;
    let value = await stored();
    assert.ok(value.startsWith(`${SEALED_PREFIX}${t.services.secrets.keyId}:`), 'sealed on create');
    assert.ok(!value.includes(secret));
    assert.equal((await api('POST', `/alerts/channels/${id}/test`)).status, 200);
    assert.equal(ntfy.got.at(-1)!.headers.authorization, `Bearer ${secret}`);

    const patched = 'tk_' + randomBytes(12).toString('hex');
    assert.equal((await api('PATCH', `/alerts/channels/${id}`, { secret: patched })).status, 200);
    value = await stored();
    assert.ok(value.startsWith(SEALED_PREFIX) && !value.includes(patched), 'sealed on PATCH');
    assert.equal((await api('POST', `/alerts/channels/${id}/test`)).status, 200);
    assert.equal(ntfy.got.at(-1)!.headers.authorization, `Bearer ${patched}`);

    // A row written before secrets were sealed: read as it is, then sealed by the start-up pass.
    const legacy = 'tk_legacy' + randomBytes(8).toString('hex');
    await t.db.update(notificationChannels).set({ secret: legacy }).where(eq(notificationChannels.id, id));
    assert.equal((await api('POST', `/alerts/channels/${id}/test`)).status, 200);
    assert.equal(ntfy.got.at(-1)!.headers.authorization, `Bearer ${legacy}`);
    assert.ok((await t.services.notifications.sealStoredSecrets()) >= 1);
    value = await stored();
    assert.ok(value.startsWith(SEALED_PREFIX) && !value.includes(legacy), 'sealed at start');
    assert.equal(await t.services.notifications.sealStoredSecrets(), 0, 'nothing left in clear');
    assert.equal((await api('POST', `/alerts/channels/${id}/test`)).status, 200);
    assert.equal(ntfy.got.at(-1)!.headers.authorization, `Bearer ${legacy}`);
    const list = JSON.stringify((await api('GET', '/alerts/channels')).body);
    assert.ok(!list.includes(legacy) && !list.includes(SEALED_PREFIX), 'the API answers hasSecret only');
  });
});
