// Proves run-on-many over 20 real agent processes (issue 10's list): one command on a tag that
// selects all 20, where the host whose agent runs with TZ=Etc/GMT+3 exits 1. Each host's own output
// and exit code are reported per host (each prints its own TZ, so a mixed-up result would show), the
// other 19 succeed, the run counts one failure, the live view ends with the run failed, and
// `job.failed` names exactly the failing host.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FleetEvent } from '../controller/src/bus/index.ts';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import {
  enrollHere,
  joinToken,
  kill,
  removeDir,
  runAgent,
  tempDir,
  startTestController,
  waitFor,
  type Proc,
  type TestController,
} from './helpers/fleet.ts';

const HOSTS = 20;
interface RunEnd {
  status: string;
  hostCount: number;
  failedCount: number;
}
const FAILING = 7;
/** Each agent's TZ: distinct, and only host 7's is the one the command fails on. */
const tzOf = (i: number) => (i === FAILING ? 'Etc/GMT+3' : `Etc/GMT-${i % 14}`);

const procs: Proc[] = [];
const dirs: string[] = [];
let ctl: TestController;
let api: ApiClient;
const events: FleetEvent[] = [];

before(async () => {
  ctl = await startTestController({ env: { KEEL_HEARTBEAT_MS: '2000' } });
  dirs.push(ctl.dataDir);
  ctl.bus.subscribe((e) => events.push(e));
  api = await signedInApi(ctl);
  const names = Array.from({ length: HOSTS }, (_, i) => `many-${String(i).padStart(2, '0')}`);
  // Enrolled in this process (enrollHere: the agent's own identity, facts and redeemJoinToken, as
  // `keel-agent enroll` runs them; the command itself is tested in agent/src/cli.test.ts): a
  // `keel-agent enroll` process costs ~0.35 s of CPU, 20 of them ~7 s, and importing
  // agent/src/main.ts's enroll() here ~0.5 s. Each agent then runs as its own `keel-agent run`.
  for (let i = 0; i < HOSTS; i += 5)
    await Promise.all(
      names.slice(i, i + 5).map(async (name, j) => {
        const dir = tempDir('keel-agent-');
        dirs.push(dir);
        await enrollHere(dir, `http://127.0.0.1:${ctl.port}`, await joinToken(ctl), ctl.fingerprint, name);
        procs.push(runAgent(dir, { TZ: tzOf(i + j) }));
      }),
    );
  const online = await waitFor(
    async () => {
      const hosts = (await api.get<{ hosts: { id: string; online: boolean }[] }>('/hosts')).body.hosts;
      return hosts.filter((h) => h.online).length === HOSTS ? hosts : null;
    },
    120_000,
    `${HOSTS} agents online`,
  );
  for (const h of online) {
    const res = await api.request('PUT', `/host-tags/${h.id}`, { tags: ['many'] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
});

after(async () => {
  for (const p of procs) await kill(p);
  await ctl?.close();
  for (const d of dirs) removeDir(d);
});

test(
  `one command on ${HOSTS} agents, one exits non-zero: reported per host`,
  { timeout: 120_000 },
  async () => {
    const started = await api.post<{ run: { id: string; hostCount: number } }>('/jobs/runs', {
      command: { argv: ['/bin/sh', '-c', 'echo "tz=$TZ"; test "$TZ" != Etc/GMT+3'] },
      target: { tag: 'many' },
      concurrency: HOSTS,
      timeoutSeconds: 60,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    assert.equal(started.body.run.hostCount, HOSTS);
    const id = started.body.run.id;
    // The live view ends with the run: its last word (a `run` event, or the snapshot when the run
    // was over before the view subscribed) is the ended run, one failure of 20.
    const live = await api.fetchRaw(`/jobs/runs/${id}/events`);
    assert.equal(live.status, 200);
    const sse = await live.text();
    // `snapshot` carries { run, hosts }, a `run` event the run itself.
    const runs = [...sse.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].flatMap(([, event, json]) =>
      event === 'snapshot'
        ? [(JSON.parse(json!) as { run: RunEnd }).run]
        : event === 'run'
          ? [JSON.parse(json!) as RunEnd]
          : [],
    );
    const last = runs.at(-1);
    assert.ok(last, sse.slice(0, 500));
    assert.deepEqual([last.status, last.hostCount, last.failedCount], ['failed', HOSTS, 1]);

    const detail = await waitFor(
      async () => {
        const r = await api.get<{
          run: { status: string; failedCount: number; hostCount: number };
          hosts: { hostName: string; status: string; exitCode: number | null; stdout: string }[];
        }>(`/jobs/runs/${id}`);
        return r.body.run.status !== 'running' ? r.body : null;
      },
      60_000,
      'the run to end',
    );
    assert.equal(detail.run.status, 'failed');
    assert.equal(detail.run.hostCount, HOSTS);
    assert.equal(detail.run.failedCount, 1);
    assert.equal(detail.hosts.length, HOSTS);
    for (const h of detail.hosts) {
      const i = Number(h.hostName.slice('many-'.length));
      assert.equal(h.stdout, `tz=${tzOf(i)}\n`, `${h.hostName}'s own output`);
      if (i === FAILING) {
        assert.equal(h.status, 'failed', h.hostName);
        assert.equal(h.exitCode, 1);
      } else {
        assert.equal(h.status, 'succeeded', `${h.hostName}: ${JSON.stringify(h)}`);
        assert.equal(h.exitCode, 0);
      }
    }
    // Published after the run's end is stored and announced (what was waited for above), once its
    // hosts' rows are read again: it may come a moment later.
    const failed = await waitFor(
      () => events.find((e) => e.type === 'job.failed' && e.runId === id),
      15_000,
      'job.failed published',
    );
    assert.ok(failed.type === 'job.failed');
    assert.deepEqual(
      failed.failedHosts.map((h) => [h.hostName, h.status, h.exitCode]),
      [[`many-0${FAILING}`, 'failed', 1]],
    );
  },
);
