// Proves service checks: the agent's probes against real local servers (an HTTPS server whose
// certificate, made by openssl for this run, expires in 3 days; a TCP listener; a stand-in DNS
// server answering A queries over UDP), the way a result travels (sink -> storage -> API with
// status, uptime and latency) and that an HTTPS check whose certificate expires in 3 days raises
// the certificate-expiry alert while a failing check raises check-failing; and, with real agent
// and controller processes, that results made while the controller is down arrive afterwards.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { encodeRecords, type CheckResult, type CheckSpec } from '@keel/shared';
import { runProbe } from '../agent/src/checks/probes.ts';
import { openTestApp } from '../controller/src/app-fixture.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { createJoinTokenRepository } from '../controller/src/repositories/join-tokens.ts';
import {
  enrollThroughApi,
  kill,
  removeDir,
  runAgent,
  startControllerProcess,
  tempDir,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { selfSignedCertificate, type Certificate } from './helpers/certificate.ts';

const DAY = 86_400_000;
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A self-signed certificate for 127.0.0.1 that expires in `days` days (openssl, at test time). */
function certificate(days: number): Certificate {
  const dir = tempDir('keel-cert-');
  cleanups.push(() => removeDir(dir));
  return selfSignedCertificate(dir, { days });
}

async function httpsServer(days: number): Promise<string> {
  const server = createHttpsServer(certificate(days), (req, res) => {
    res.statusCode = req.url === '/health' ? 200 : 503;
    res.end(req.url === '/health' ? 'status: healthy' : 'down');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Stand-in DNS server (UDP): answers every A query with 10.1.2.3. */
async function dnsStandIn(): Promise<string> {
  const socket = createSocket('udp4');
  socket.on('message', (q, peer) => {
    let end = 12;
    while (end < q.length && q[end] !== 0) end += q[end]! + 1;
    end += 5; // the root label, QTYPE, QCLASS
    const header = Buffer.from([q[0]!, q[1]!, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
    socket.send(Buffer.concat([header, q.subarray(12, end), answer]), peer.port, peer.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  cleanups.push(() => socket.close());
  return `127.0.0.1:${socket.address().port}`;
}

const spec = <K extends CheckSpec['kind']>(kind: K, target: Record<string, unknown>): CheckSpec =>
  ({ id: randomUUID(), kind, intervalSeconds: 30, timeoutMs: 5_000, target }) as unknown as CheckSpec;
const http = (target: Record<string, unknown>) =>
  spec('http', { method: 'GET', expectStatus: [], insecure: false, ...target });

describe('probes', () => {
  test('HTTPS: status, body match, latency and the certificate expiry (3 days)', async () => {
    const base = await httpsServer(3);
    const strict = await runProbe(http({ url: `${base}/health` }));
    assert.equal(strict.ok, false, 'a self-signed certificate does not verify');
    assert.match(strict.error ?? '', /self[- ]signed/i);
    const up = await runProbe(http({ url: `${base}/health`, insecure: true, bodyContains: 'healthy' }));
    assert.equal(up.ok, true, up.error);
    assert.equal(up.status, 200);
    assert.ok(up.latencyMs !== null && up.latencyMs > 0);
    const left = (up.certExpiresAt! - Date.now()) / DAY;
    assert.ok(left > 2.9 && left <= 3.01, `expires in 3 days (got ${left})`);
    const noMatch = await runProbe(http({ url: `${base}/health`, insecure: true, bodyContains: 'nope' }));
    assert.equal(noMatch.ok, false);
    const down = await runProbe(http({ url: `${base}/other`, insecure: true }));
    assert.deepEqual([down.ok, down.status], [false, 503]);
  });

  test('TCP connect and DNS through a chosen resolver', async () => {
    const server = createTcpServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    assert.equal((await runProbe(spec('tcp', { host: '127.0.0.1', port }))).ok, true);
    server.close();
    await new Promise((r) => setImmediate(r));
    const refused = await runProbe(spec('tcp', { host: '127.0.0.1', port }));
    assert.equal(refused.ok, false);
    assert.match(refused.error ?? '', /ECONNREFUSED/);

    const dns = await dnsStandIn();
    const found = await runProbe(
      spec('dns', { name: 'game.example', recordType: 'A', server: dns, expect: '10.1.2.3' }),
    );
    assert.equal(found.ok, true, found.error);
    assert.deepEqual(found.addresses, ['10.1.2.3']);
    const wrong = await runProbe(
      spec('dns', { name: 'game.example', recordType: 'A', server: dns, expect: '10.9.9.9' }),
    );
    assert.equal(wrong.ok, false);
  });
});

describe('from result to alert', () => {
  test('an HTTPS check whose certificate expires in 3 days raises the expiry alert', async () => {
    let clock = Date.now();
    const t = await openTestApp({ now: () => new Date(clock) });
    cleanups.push(() => t.close());
    const owner = await t.signInAs('owner');
    const { secret } = await createJoinTokenRepository(t.db).create({ ttlSeconds: 600 });
    const host = await createHostRepository(t.db).enroll({
      publicKey: randomBytes(32).toString('base64url'),
      name: 'edge-1',
      facts: null as never,
      tokenSecret: secret,
    });
    t.gateway.online.add(host.id);
    t.gateway.answer['checks.apply'] = () => ({ generation: 1, count: 1 });
    const api = async <T>(method: string, path: string, json?: unknown) => {
      const res = await t.request(`/api/v1${path}`, { method, as: owner, ...(json ? { json } : {}) });
      return { status: res.status, body: (await res.json()) as T };
    };
    const base = await httpsServer(3);
    const made = await api<{ check: { id: string; status: string } }>('POST', '/checks', {
      name: 'shop TLS',
      kind: 'http',
      target: { url: `${base}/health`, insecure: true, bodyContains: 'healthy' },
      hostIds: [host.id],
      intervalSeconds: 30,
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.check.status, 'unknown');
    assert.ok(
      t.gateway.calls.some((c) => c.method === 'checks.apply' && c.hostId === host.id),
      'the check set is pushed to its host',
    );
    const bad = await api<{ error: { code: string } }>('POST', '/checks', {
      name: 'x',
      kind: 'tcp',
      target: { host: 'a b', port: 99999 },
      hostIds: [host.id],
    });
    assert.equal(bad.body.error.code, 'request.invalid');

    // The agent's probe, its result through the stream sink, as the gateway would store it.
    const probeSpec = {
      id: made.body.check.id,
      kind: 'http',
      intervalSeconds: 30,
      timeoutMs: 5_000,
      target: {
        url: `${base}/health`,
        method: 'GET',
        expectStatus: [],
        insecure: true,
        bodyContains: 'healthy',
      },
    } as CheckSpec;
    const results: CheckResult[] = [await runProbe(probeSpec)];
    results.push({ ...results[0]!, t: results[0]!.t + 30_000 });
    const batch = (firstSeq: number, list: CheckResult[]) => ({
      firstSeq,
      count: list.length,
      body: encodeRecords(list.map((r) => ({ ts: r.t, payload: Buffer.from(JSON.stringify(r)) }))),
    });
    assert.deepEqual(await t.services.checks.sink.append(host.id, 'checks', batch(1, results)), {
      ackedSeq: 2,
    });
    // A resend is a no-op.
    await t.services.checks.sink.append(host.id, 'checks', batch(1, results));
    clock = results[1]!.t + 1_000;
    const listed = await api<{
      checks: {
        status: string;
        uptime: { day: number };
        last: { certExpiresAt: string }[];
        latency: (number | null)[];
      }[];
    }>('GET', '/checks');
    assert.equal(listed.body.checks[0]!.status, 'up');
    assert.equal(listed.body.checks[0]!.uptime.day, 1);
    assert.ok(
      listed.body.checks[0]!.latency.some((v) => v !== null),
      'latency sparkline',
    );
    const history = await api<{ results: unknown[] }>('GET', `/checks/${made.body.check.id}/results?from=0`);
    assert.equal(history.body.results.length, 2, 'stored once each');

    const rule = await api<{ rule: { id: string } }>('POST', '/alerts/rules', {
      name: 'certificates',
      kind: 'cert_expiry',
      params: { days: 14 },
      forSeconds: 0,
    });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    const farRule = await api<{ rule: { id: string } }>('POST', '/alerts/rules', {
      name: 'certificates, last day',
      kind: 'cert_expiry',
      params: { days: 1 },
      forSeconds: 0,
    });
    const failing = await api<{ rule: { id: string } }>('POST', '/alerts/rules', {
      name: 'checks failing',
      kind: 'check_failing',
      forSeconds: 0,
      resolveForSeconds: 0,
    });
    await t.services.alerts.evaluate(clock);
    type A = { ruleId: string; state: string; value: number; summary: string; checkId: string };
    let active = (await api<{ alerts: A[] }>('GET', '/alerts?state=active')).body.alerts;
    const expiry = active.filter((a) => a.ruleId === rule.body.rule.id);
    assert.equal(expiry.length, 1, JSON.stringify(active));
    assert.equal(expiry[0]!.state, 'firing');
    assert.equal(expiry[0]!.checkId, made.body.check.id);
    assert.ok(expiry[0]!.value > 2.8 && expiry[0]!.value <= 3, `3 days left (got ${expiry[0]!.value})`);
    assert.match(expiry[0]!.summary, /shop TLS/);
    assert.equal(active.filter((a) => a.ruleId === farRule.body.rule.id).length, 0, '3 days is not within 1');
    assert.equal(active.filter((a) => a.ruleId === failing.body.rule.id).length, 0, 'the check is up');

    // The site goes down: check failing fires; it comes back: resolves.
    const downResult = {
      ...results[1]!,
      t: results[1]!.t + 30_000,
      ok: false,
      error: 'HTTP status 503',
      status: 503,
    };
    await t.services.checks.sink.append(host.id, 'checks', batch(3, [downResult]));
    clock = downResult.t + 1_000;
    await t.services.alerts.evaluate(clock);
    active = (await api<{ alerts: A[] }>('GET', '/alerts?state=active')).body.alerts;
    assert.equal(active.filter((a) => a.ruleId === failing.body.rule.id && a.state === 'firing').length, 1);
    await t.services.checks.sink.append(
      host.id,
      'checks',
      batch(4, [{ ...results[1]!, t: downResult.t + 30_000 }]),
    );
    clock = downResult.t + 31_000;
    await t.services.alerts.evaluate(clock);
    active = (await api<{ alerts: A[] }>('GET', '/alerts?state=active')).body.alerts;
    assert.equal(active.filter((a) => a.ruleId === failing.body.rule.id).length, 0);
    const listedAgain = await api<{ checks: { uptime: { day: number } }[] }>('GET', '/checks');
    assert.ok(Math.abs(listedAgain.body.checks[0]!.uptime.day - 0.75) < 1e-9, 'uptime 3 of 4');

    // A viewer sees checks; only monitoring.manage may change them.
    const viewer = await t.signInAs('viewer');
    const asViewer = await t.request('/api/v1/checks', { as: viewer });
    assert.equal(asViewer.status, 200);
    const del = await t.request(`/api/v1/checks/${made.body.check.id}`, { method: 'DELETE', as: viewer });
    assert.equal(del.status, 403);
  });
});

test('results made while the controller is down arrive after it is back', { timeout: 240_000 }, async () => {
  const procs: Proc[] = [];
  cleanups.push(async () => {
    for (const p of procs) await kill(p);
  });
  const controller = await startControllerProcess(procs);
  cleanups.push(() => removeDir(controller.dataDir));
  const stateDir = tempDir('keel-agent-');
  cleanups.push(() => removeDir(stateDir));
  await enrollThroughApi(controller.api, stateDir, 'checker-1');
  const { body: list } = await controller.api.get<{ hosts: { id: string; name: string }[] }>('/hosts');
  const hostId = list.hosts.find((h) => h.name === 'checker-1')!.id;
  const agent = runAgent(stateDir);
  procs.push(agent);
  const target = createTcpServer((s) => s.end());
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  cleanups.push(() => target.close());
  await waitFor(
    async () =>
      (await controller.api.get<{ host: { online: boolean } }>(`/hosts/${hostId}`)).body.host.online,
    60_000,
    'agent online',
  );
  const made = await controller.api.post<{ check: { id: string } }>('/checks', {
    name: 'game port',
    kind: 'tcp',
    target: { host: '127.0.0.1', port: (target.address() as AddressInfo).port },
    hostIds: [hostId],
    intervalSeconds: 5,
    timeoutMs: 2_000,
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const results = async () =>
    (
      await controller.api.get<{ results: { at: string; ok: boolean }[] }>(
        `/checks/${made.body.check.id}/results?from=0`,
      )
    ).body.results.map((r) => ({ at: Date.parse(r.at), ok: r.ok }));
  await waitFor(async () => (await results()).length >= 1, 60_000, 'a first result').catch((err: unknown) => {
    throw new Error(`${String(err)}\nagent: ${agent.output().slice(-3000)}`);
  });

  await controller.kill();
  const down = Date.now();
  // Wall time is the point here (the agent keeps probing on its own clock): two intervals.
  await new Promise((r) => setTimeout(r, 12_000));
  await controller.start();
  const up = Date.now();
  const during = await waitFor(
    async () => {
      const list = await results();
      const inOutage = list.filter((r) => r.at > down && r.at < up);
      return inOutage.length >= 2 ? inOutage : null;
    },
    60_000,
    'results made during the outage',
  );
  assert.ok(
    during.every((r) => r.ok),
    'the target stayed up',
  );
  await kill(agent, 'SIGTERM');
});
