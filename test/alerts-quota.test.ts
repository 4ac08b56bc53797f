// Proves the transfer-quota alert rule and alert acknowledgement through the API on a real database
// with an injected clock: with a 10 GB quota, 80 % and 100 % rules fire as the cycle's transfer
// passes each share (hosts without a quota are not watched), and both resolve when the billing
// cycle resets; an active alert is acknowledged once (the first acknowledgement stays, audited), a
// viewer may not acknowledge, and a resolved or unknown alert is not found.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { trafficDaily } from '../controller/src/db/schema/traffic.ts';

const T0 = Date.parse('2026-03-20T12:00:00Z');
let clock = T0;
let t: TestApp;
let owner: SignedIn;
let viewer: SignedIn;
const GB = 1e9;

const enrollHost = (name: string) => t.enrollHost(name);

async function api<T = Record<string, unknown>>(method: string, path: string, json?: unknown, as = owner) {
  const res = await t.request(`/api/v1${path}`, { method, as, ...(json !== undefined ? { json } : {}) });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

/** Adds bytes moved on a UTC day (as ingest accounts them). */
async function moved(host: string, day: string, rx: number, tx: number) {
  await t.db.insert(trafficDaily).values({ hostId: host, iface: 'eth0', day, rxBytes: rx, txBytes: tx });
}

interface AlertView {
  id: string;
  ruleId: string;
  hostId: string | null;
  state: string;
  value: number | null;
  summary: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
}
const active = async () => (await api<{ alerts: AlertView[] }>('GET', '/alerts?state=active')).body.alerts;

before(async () => {
  t = await openTestApp({ now: () => new Date(clock) });
  owner = await t.signInAs('owner');
  viewer = await t.signInAs('viewer');
});
after(async () => {
  await t.close();
});

test(
  'transfer over 80 % and 100 % of the quota fires each rule; a new cycle resolves them',
  { timeout: 60_000 },
  async () => {
    const vps = await enrollHost('vps-1');
    const unmetered = await enrollHost('unmetered-1');
    const plan = await api('PUT', `/hosts/${vps}/traffic-plan`, { resetDay: 15, quotaBytes: 10 * GB });
    assert.equal(plan.status, 200, JSON.stringify(plan.body));
    // Cycle 2026-03-15 .. 2026-04-15: 6 GB before it (not counted), 8.5 GB in it.
    await moved(vps, '2026-03-10', 3 * GB, 3 * GB);
    await moved(vps, '2026-03-16', 5 * GB, 3.5 * GB);
    await moved(unmetered, '2026-03-16', 500 * GB, 500 * GB);
    const rule = async (percent: number, severity: string) =>
      (
        await api<{ rule: { id: string } }>('POST', '/alerts/rules', {
          name: `transfer ${percent} %`,
          kind: 'transfer_quota',
          params: { percent },
          severity,
          forSeconds: 0,
          resolveForSeconds: 0,
        })
      ).body.rule.id;
    const at80 = await rule(80, 'warning');
    const at100 = await rule(100, 'critical');
    const bad = await api('POST', '/alerts/rules', {
      name: 'x',
      kind: 'transfer_quota',
      params: { percent: 0 },
    });
    assert.equal(bad.status, 400);

    await t.services.alerts.evaluate(clock);
    let now = await active();
    assert.deepEqual(
      now.map((a) => [a.ruleId, a.hostId, a.state, a.value]),
      [[at80, vps, 'firing', 85]],
      'only the 80 % rule fires, only for the host with a quota',
    );
    assert.match(
      now[0]!.summary,
      /8\.50 GB of the 10\.0 GB transfer quota used this cycle \(85 %, resets 2026-04-15\)/,
    );

    await moved(vps, '2026-03-20', 1 * GB, 0.6 * GB); // 10.1 GB
    clock += 60_000;
    await t.services.alerts.evaluate(clock);
    now = await active();
    assert.deepEqual(now.map((a) => a.ruleId).sort(), [at80, at100].sort(), 'both fire past the quota');

    // Acknowledge the critical one; a second acknowledgement keeps the first; a viewer may not.
    const critical = now.find((a) => a.ruleId === at100)!;
    const ack = await api<{ alert: AlertView }>('POST', `/alerts/${critical.id}/acknowledge`);
    assert.equal(ack.status, 200, JSON.stringify(ack.body));
    assert.equal(ack.body.alert.acknowledgedAt, new Date(clock).toISOString());
    assert.equal(ack.body.alert.acknowledgedBy, owner.userId);
    clock += 1_000;
    const again = await api<{ alert: AlertView }>('POST', `/alerts/${critical.id}/acknowledge`);
    assert.equal(again.body.alert.acknowledgedAt, ack.body.alert.acknowledgedAt);
    assert.equal((await api('POST', `/alerts/${critical.id}/acknowledge`, undefined, viewer)).status, 403);
    const audit = await api<{ entries: { action: string; target: string }[] }>(
      'GET',
      '/audit?action=alert.acknowledge',
    );
    assert.equal(audit.body.entries.filter((e) => e.target === `alert:${critical.id}`).length, 2);
    assert.ok((await active()).find((a) => a.id === critical.id)!.acknowledgedAt);

    // The cycle resets on the 15th: usage starts from zero and both resolve.
    clock = Date.parse('2026-04-15T00:10:00Z');
    await t.services.alerts.evaluate(clock);
    owner = await t.signInAs('owner'); // the session expired over the jump
    assert.deepEqual(await active(), []);
    const history = await api<{ alerts: AlertView[] }>('GET', '/alerts?state=history');
    assert.equal(history.body.alerts.filter((a) => a.state === 'resolved').length, 2);
    const gone = await api<{ error: { code: string } }>('POST', `/alerts/${critical.id}/acknowledge`);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'alert.not_found');
    assert.equal((await api('POST', `/alerts/00000000-0000-4000-8000-000000000000/acknowledge`)).status, 404);
  },
);
