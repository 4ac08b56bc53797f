// Proves run-on-many and scheduled jobs end to end with real agent processes and a real controller:
// one command on 3 hosts gives each host's output and exit code (one host fails, the others
// succeed), live output reaches the run's SSE view, output past the cap is cut with a visible
// note, a timeout and a cancel kill the command's whole process group, a host the user may not see
// is refused; a schedule fires on its (second-level) cron pattern and keeps its history, a slot
// whose previous run still runs is skipped, a failed run publishes `job.failed` on the bus, and a
// schedule neither double-fires after a controller restart nor when two controllers share one
// PostgreSQL database.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FleetEvent } from '../controller/src/bus/index.ts';
import type { Controller } from '../controller/src/server.ts';
import { ApiClient, signedInApi } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startReplicas,
  startTestController,
  tempDir,
  waitFor,
  type Proc,
  type Replicas,
} from './helpers/fleet.ts';

interface RunView {
  id: string;
  status: string;
  note: string | null;
  trigger: string;
  scheduleId: string | null;
  scheduledFor: string | null;
  hostCount: number;
  failedCount: number;
}
interface HostResult {
  hostId: string;
  hostName: string;
  status: string;
  exitCode: number | null;
  error: string | null;
  durationMs: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stdoutTruncated: boolean;
}

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: Controller & { dataDir: string };
let api: ApiClient;
const hostIds: string[] = [];
const events: FleetEvent[] = [];
const work = tempDir('keel-jobs-');
dirs.push(work);

async function runTo(body: unknown): Promise<{ status: number; body: { run: RunView } }> {
  return api.post<{ run: RunView }>('/jobs/runs', body);
}
async function finished(id: string, ms = 30_000): Promise<{ run: RunView; hosts: HostResult[] }> {
  return waitFor(
    async () => {
      const r = await api.get<{ run: RunView; hosts: HostResult[] }>(`/jobs/runs/${id}`);
      return r.body.run.status !== 'running' ? r.body : null;
    },
    ms,
    `run ${id} to end`,
  );
}
const pidGone = (pid: number) =>
  !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z';

before(async () => {
  ctl = await startTestController({ env: { KEEL_HEARTBEAT_MS: '1000' } });
  dirs.push(ctl.dataDir);
  ctl.bus.subscribe((e) => events.push(e));
  api = await signedInApi(ctl);
  // Three agents; the third runs with TZ=Etc/GMT+1, which the test command turns into a failure.
  for (const [i, tz] of ['UTC', 'UTC', 'Etc/GMT+1'].entries()) {
    const dir = await enrollNewAgent(ctl, `jobs-host-${i + 1}`);
    dirs.push(dir);
    procs.push(runAgent(dir, { TZ: tz }));
  }
  const online = await waitFor(
    async () => {
      const hosts = (await api.get<{ hosts: { id: string; name: string; online: boolean }[] }>('/hosts')).body
        .hosts;
      return hosts.filter((h) => h.online).length === 3 ? hosts : null;
    },
    60_000,
    'three agents online',
  ).catch((err: Error) => {
    // Say why (seen once at load 15 with three copies of this file running).
    throw new Error(`${err.message}\n${procs.map((p) => p.output().slice(-2000)).join('\n---\n')}`);
  });
  for (const h of online.sort((a, b) => a.name.localeCompare(b.name))) hostIds.push(h.id);
});

after(async () => {
  await ctl?.close();
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

describe('run on many hosts', () => {
  test(
    '3 hosts: output and exit code per host, one fails, live output on the SSE view',
    { timeout: 60_000 },
    async () => {
      const script = 'echo "out $TZ"; sleep 1; echo "err $TZ" >&2; test "$TZ" != Etc/GMT+1';
      const started = await runTo({ command: { argv: ['/bin/sh', '-c', script] }, target: { hostIds } });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const live = await api.fetchRaw(`/jobs/runs/${started.body.run.id}/events`);
      assert.equal(live.status, 200);
      const sse = await live.text(); // the stream ends when the run ends
      assert.match(sse, /event: snapshot/);
      // The first line may already be in the snapshot (the subscription can come after it); the
      // second comes a second later, so it arrives as a live output event.
      assert.match(sse, /"out UTC\\n"/);
      assert.match(sse, /event: output\ndata: .*"text":"err UTC\\n"/);
      assert.match(sse, /event: run\ndata: .*"status":"failed"/);

      const { run, hosts } = await finished(started.body.run.id);
      assert.equal(run.status, 'failed');
      assert.equal(run.hostCount, 3);
      assert.equal(run.failedCount, 1);
      const byName = new Map(hosts.map((h) => [h.hostName, h]));
      for (const name of ['jobs-host-1', 'jobs-host-2']) {
        const h = byName.get(name)!;
        assert.equal(h.status, 'succeeded', JSON.stringify(h));
        assert.equal(h.exitCode, 0);
        assert.equal(h.stdout, 'out UTC\n');
        assert.equal(h.stderr, 'err UTC\n');
        assert.ok(h.durationMs! >= 900, `duration ${h.durationMs}`);
      }
      const bad = byName.get('jobs-host-3')!;
      assert.equal(bad.status, 'failed');
      assert.equal(bad.exitCode, 1);
      assert.equal(bad.stdout, 'out Etc/GMT+1\n');
      // job.failed is published after the run's end is stored and announced (the end this test
      // waited for), once its hosts' rows are read again: it may come a moment later.
      const failed = await waitFor(
        () => events.find((e) => e.type === 'job.failed' && e.runId === run.id),
        15_000,
        'job.failed published',
      );
      assert.ok(failed.type === 'job.failed');
      assert.deepEqual(
        failed.failedHosts.map((h) => [h.hostName, h.status, h.exitCode]),
        [['jobs-host-3', 'failed', 1]],
      );
      const audit = await api.get<{ entries: { action: string; target: string }[] }>('/audit?limit=50');
      assert.ok(audit.body.entries.some((e) => e.action === 'job.run' && e.target === `job:${run.id}`));
    },
  );

  test('output past the cap is cut and flagged', { timeout: 30_000 }, async () => {
    const started = await runTo({
      command: { argv: ['/bin/sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" a; echo done >&2'] },
      target: { hostIds: [hostIds[0]] },
      maxOutputBytes: 10_240,
    });
    assert.equal(started.status, 201);
    const { hosts } = await finished(started.body.run.id);
    const h = hosts[0]!;
    assert.equal(h.status, 'succeeded');
    assert.equal(h.stdout.length, 10_240);
    assert.equal(h.stdoutTruncated, true);
    assert.equal(h.stderr, 'done\n');
  });

  test('a timeout kills the whole process group', { timeout: 30_000 }, async () => {
    const pidFile = join(work, 'timeout.pid');
    const started = await runTo({
      command: { argv: ['/bin/sh', '-c', `sleep 300 & echo $! > ${pidFile}; sleep 300`] },
      target: { hostIds: [hostIds[0]] },
      timeoutSeconds: 2,
    });
    const { run, hosts } = await finished(started.body.run.id);
    assert.equal(run.status, 'failed');
    assert.equal(hosts[0]!.status, 'timeout');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => pidGone(pid), 5_000, 'the background sleep gone');
  });

  test('cancel ends running hosts and kills their groups', { timeout: 30_000 }, async () => {
    const pidFile = join(work, 'cancel.pid');
    const started = await runTo({
      command: { argv: ['/bin/sh', '-c', `sleep 300 & echo $! > ${pidFile}; wait`] },
      target: { hostIds: [hostIds[1]] },
    });
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim(), 10_000, 'the pid file');
    const cancelled = await api.post<{ run: RunView }>(`/jobs/runs/${started.body.run.id}/cancel`);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.run.status, 'cancelled');
    const { hosts } = await finished(started.body.run.id);
    assert.equal(hosts[0]!.status, 'cancelled');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => pidGone(pid), 5_000, 'the background sleep gone');
    const again = await api.post(`/jobs/runs/${started.body.run.id}/cancel`);
    assert.equal(again.status, 409);
  });

  test('argv is not a shell: metacharacters reach the program as they are', { timeout: 30_000 }, async () => {
    const started = await runTo({
      command: { argv: ['echo', '$HOME; id', '`x`'] },
      target: { hostIds: [hostIds[0]] },
    });
    const { hosts } = await finished(started.body.run.id);
    assert.equal(hosts[0]!.stdout, '$HOME; id `x`\n');
  });

  test(
    'a host the user may not see is refused; a tag reaching it is narrowed',
    { timeout: 30_000 },
    async () => {
      const group = await api.post<{ group: { id: string } }>('/groups', {
        name: 'jobs-a',
        hostIds: [hostIds[0]],
      });
      assert.equal(group.status, 201, JSON.stringify(group.body));
      const { api: scoped, id: scopedId } = await api.newUser({
        username: 'jobs-scoped',
        role: 'operator',
        scoped: true,
      });
      await api.post(`/users/${scopedId}/grants`, { groupId: group.body.group.id, role: 'admin' });
      for (const id of hostIds) await api.request('PUT', `/host-tags/${id}`, { tags: ['jobs-all'] });
      const command = { argv: ['true'] };
      const refused = await scoped.post<{ error: { code: string } }>('/jobs/runs', {
        command,
        target: { hostIds: [hostIds[1]] },
      });
      assert.equal(refused.status, 404);
      assert.equal(refused.body.error.code, 'host.not_found');
      const mixed = await scoped.post('/jobs/runs', {
        command,
        target: { hostIds: [hostIds[0], hostIds[2]] },
      });
      assert.equal(mixed.status, 404);
      const byTag = await scoped.post<{ run: RunView }>('/jobs/runs', {
        command,
        target: { tag: 'jobs-all' },
      });
      assert.equal(byTag.status, 201);
      assert.equal(byTag.body.run.hostCount, 1);
      const { hosts } = await finished(byTag.body.run.id);
      assert.deepEqual(
        hosts.map((h) => h.hostId),
        [hostIds[0]],
      );
      // Runs that touched a host the scoped user cannot see are not theirs to read (runs on their
      // own hosts are, whoever started them).
      const list = await scoped.get<{ runs: RunView[] }>('/jobs/runs?limit=200');
      assert.ok(list.body.runs.some((r) => r.id === byTag.body.run.id));
      const all = await api.get<{ runs: RunView[] }>('/jobs/runs?limit=200');
      const wide = all.body.runs.filter((r) => r.hostCount === 3);
      assert.ok(wide.length > 0);
      for (const r of wide) assert.ok(!list.body.runs.some((x) => x.id === r.id));
      assert.equal((await scoped.get(`/jobs/runs/${wide[0]!.id}`)).status, 404);
      const { api: v } = await api.newUser({ username: 'jobs-viewer', role: 'viewer' });
      assert.equal((await v.post('/jobs/runs', { command, target: { hostIds } })).status, 403);
    },
  );
});

describe('scheduled jobs', () => {
  test('fires on its schedule, keeps history, publishes job.failed', { timeout: 60_000 }, async () => {
    const created = await api.post<{ schedule: { id: string; nextRunAt: string } }>('/jobs/schedules', {
      name: 'every two seconds',
      command: { argv: ['/bin/sh', '-c', 'echo tick; exit 3'] },
      target: { hostIds: [hostIds[0]] },
      cron: '*/2 * * * * *',
      timezone: 'Europe/Berlin',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.schedule.id;
    const runs = await waitFor(
      async () => {
        const r = await api.get<{ runs: RunView[] }>(`/jobs/runs?scheduleId=${id}`);
        const done = r.body.runs.filter((x) => x.status !== 'running');
        return done.length >= 2 ? done : null;
      },
      30_000,
      'two scheduled runs',
    );
    for (const r of runs) {
      assert.equal(r.trigger, 'schedule');
      assert.equal(r.status, 'failed');
      assert.equal(new Date(r.scheduledFor!).getUTCSeconds() % 2, 0);
    }
    const detail = await api.get<{ run: RunView; hosts: HostResult[] }>(`/jobs/runs/${runs[0]!.id}`);
    assert.equal(detail.body.hosts[0]!.exitCode, 3);
    assert.equal(detail.body.hosts[0]!.stdout, 'tick\n');
    // Each run's job.failed comes a moment after its end is stored (see the test above).
    const failed = await waitFor(
      () => {
        const published = events.filter((e) => e.type === 'job.failed' && e.scheduleId === id);
        return published.length >= 2 ? published : null;
      },
      15_000,
      'job.failed of both runs',
    );
    assert.equal(failed[0]!.type === 'job.failed' && failed[0]!.scheduleName, 'every two seconds');
    const list = await api.get<{ schedules: { id: string; lastRun: RunView | null }[] }>('/jobs/schedules');
    assert.ok(list.body.schedules.find((s) => s.id === id)?.lastRun);
    const off = await api.request<{ schedule: { enabled: boolean; nextRunAt: string | null } }>(
      'PATCH',
      `/jobs/schedules/${id}`,
      { enabled: false },
    );
    assert.equal(off.status, 200);
    assert.equal(off.body.schedule.nextRunAt, null);
    const offAt = Date.now();
    const count = (await api.get<{ runs: RunView[] }>(`/jobs/runs?scheduleId=${id}`)).body.runs.length;
    await new Promise((r) => setTimeout(r, 3_000));
    // A tick that read the schedule before the PATCH may still start the slot it was on (on a busy
    // machine its run row lands after the count above): at most that one, due before the PATCH
    // answered. No slot after the disable runs.
    const later = (await api.get<{ runs: RunView[] }>(`/jobs/runs?scheduleId=${id}`)).body.runs;
    assert.ok(later.length <= count + 1, `${later.length - count} runs after the disable`);
    for (const r of later)
      assert.ok(Date.parse(r.scheduledFor!) <= offAt, `a run for ${r.scheduledFor} after the disable`);
    const now = await api.post<{ run: RunView }>(`/jobs/schedules/${id}/run`);
    assert.equal(now.status, 201);
    assert.equal(now.body.run.trigger, 'run-now');
    assert.equal((await api.request('DELETE', `/jobs/schedules/${id}`)).status, 204);
  });

  test('a slot whose previous run is still running is skipped', { timeout: 60_000 }, async () => {
    const created = await api.post<{ schedule: { id: string } }>('/jobs/schedules', {
      name: 'overlapping',
      command: { argv: ['sleep', '3'] },
      target: { hostIds: [hostIds[1]] },
      cron: '* * * * * *',
    });
    assert.equal(created.status, 201);
    const id = created.body.schedule.id;
    const runs = await waitFor(
      async () => {
        const r = (await api.get<{ runs: RunView[] }>(`/jobs/runs?scheduleId=${id}`)).body.runs;
        return r.some((x) => x.status === 'skipped') && r.some((x) => x.status === 'succeeded') ? r : null;
      },
      30_000,
      'a skipped and a finished run',
    );
    await api.request('PATCH', `/jobs/schedules/${id}`, { enabled: false });
    assert.ok(
      runs
        .filter((r) => r.status === 'skipped')
        .every((r) => r.note === 'the previous run was still running'),
    );
    // Never two at once: runs that ran do not overlap.
    const detail = await Promise.all(
      runs
        .filter((r) => r.status !== 'skipped')
        .map((r) =>
          api.get<{ run: RunView & { startedAt: string; endedAt: string | null } }>(`/jobs/runs/${r.id}`),
        ),
    );
    const spans = detail
      .map((d) => d.body.run)
      .filter((r) => r.endedAt)
      .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i]!.startedAt >= spans[i - 1]!.endedAt!);
  });

  test('a bad cron expression or time zone is refused', async () => {
    const base = { name: 'x', command: { argv: ['true'] }, target: { hostIds: [hostIds[0]] } };
    const bad = await api.post<{ error: { code: string } }>('/jobs/schedules', {
      ...base,
      cron: 'every day',
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'schedule.invalid_cron');
    const tz = await api.post<{ error: { code: string } }>('/jobs/schedules', {
      ...base,
      cron: '0 * * * *',
      timezone: 'Mars/Olympus',
    });
    assert.equal(tz.body.error.code, 'schedule.invalid_cron');
  });
});

describe('no double fire', () => {
  // Closed by the file's `after` too: a test that runs past its limit is cancelled but its body
  // goes on, and whatever it left open kept the file from exiting.
  let replicas: Replicas | null = null;
  after(async () => {
    await replicas?.close();
  });
  test(
    'two controllers on one PostgreSQL and a restart run each slot once',
    // It once failed in CI: after the restart, B (which never holds the agent) won every slot for
    // over a minute — its tick came earlier in each second than A's — and recorded the host offline
    // each time. A replica holding none of a schedule's hosts now leaves a slot to the one that
    // holds one for HOLDER_GRACE_MS (services/schedules.ts; test/jobs-scheduler.test.ts).
    { timeout: 150_000 },
    async (t) => {
      replicas = await startReplicas(t, 'keel_jobs');
      if (!replicas) return;
      const set = replicas;
      // Every wait also ends when the test is cancelled, and no single request may hold the body.
      const bounded = <T>(p: Promise<T>, what: string): Promise<T> =>
        Promise.race([
          p,
          new Promise<never>((_, reject) => {
            const onAbort = () => reject(new Error('test cancelled'));
            const timer = setTimeout(() => reject(new Error(`no answer in 20 s: ${what}`)), 20_000);
            timer.unref();
            t.signal.addEventListener('abort', onAbort, { once: true });
            const done = () => {
              clearTimeout(timer);
              t.signal.removeEventListener('abort', onAbort);
            };
            p.then(done, done);
          }),
        ]);
      const until = <T>(check: () => Promise<T>, ms: number, what: string) =>
        waitFor(
          async () => {
            if (t.signal.aborted) throw new Error('test cancelled');
            return bounded(check(), what);
          },
          ms,
          what,
        );
      try {
        const a = await set.start();
        const b = await set.start();
        const dir = await enrollNewAgent(a, 'replica-host');
        dirs.push(dir);
        procs.push(runAgent(dir));
        // The first admin was made by A, the first on the database: B signs in as it too.
        const client = await signedInApi(a);
        const clientB = await ApiClient.signIn(b.url, a.firstAdmin!);
        const hostId = await until(
          async () =>
            (await client.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts.find(
              (h) => h.online,
            )?.id,
          45_000,
          'agent online',
        );
        const created = await client.post<{ schedule: { id: string } }>('/jobs/schedules', {
          name: 'replicas',
          command: { argv: ['true'] },
          target: { hostIds: [hostId] },
          cron: '* * * * * *',
        });
        assert.equal(created.status, 201);
        const id = created.body.schedule.id;
        const runsOn = async (api: ApiClient) =>
          (await api.get<{ runs: RunView[] }>(`/jobs/runs?scheduleId=${id}&limit=200`)).body.runs;
        await until(async () => (await runsOn(client)).length >= 4, 45_000, 'four slots');
        // Restart controller A (the one the agent is on) on the same database and port: the agent
        // comes back to it, and its scheduler claims slots again beside B's.
        await set.stop(a, { keepDataDir: true });
        const before = await runsOn(clientB);
        const a2 = await set.start({ dataDir: a.dataDir, port: a.port });
        const client2 = await ApiClient.signIn(a2.url, a.firstAdmin!);
        // A run that reached the host after the restart was started by the restarted A (B never
        // holds the agent): the restarted scheduler claims slots. Until the agent is back, B claims
        // each slot HOLDER_GRACE_MS late and records the host offline.
        await until(
          async () => {
            const runs = await runsOn(client2);
            return (
              runs.length >= before.length + 3 &&
              runs.some((r) => r.status === 'succeeded' && !before.some((x) => x.id === r.id))
            );
          },
          60_000,
          'three more slots after the restart, one of them run on the host',
        ).catch(async (err: Error) => {
          const runs = await runsOn(clientB).catch(() => []);
          const lines = runs.map((r) => `${r.scheduledFor} ${r.status} ${r.note ?? ''}`);
          throw new Error(
            `${err.message}; before the restart ${before.length} runs; now:\n${lines.join('\n')}`,
          );
        });
        await client2.request('PATCH', `/jobs/schedules/${id}`, { enabled: false });
        const runs = await runsOn(client2);
        const seen = new Set<string>();
        for (const r of runs) {
          assert.ok(r.scheduledFor);
          assert.ok(!seen.has(r.scheduledFor), `slot ${r.scheduledFor} ran twice`);
          seen.add(r.scheduledFor);
        }
        assert.ok(runs.length >= 7);
        // Every slot from the first to the last has its row: none was dropped by a late tick.
        const slots = runs.map((r) => Date.parse(r.scheduledFor!)).sort((x, y) => x - y);
        for (let i = 1; i < slots.length; i++)
          assert.equal(
            slots[i]! - slots[i - 1]!,
            1000,
            `no row for the slot after ${new Date(slots[i - 1]!).toISOString()}`,
          );
      } finally {
        await set.close();
      }
    },
  );
});
