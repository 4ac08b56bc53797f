// Proves streams end to end with real processes: an agent emitting numbered events while the
// controller and then the agent itself are killed -9 and restarted loses nothing and stores
// nothing twice, in order; an overfilled spool shows up as an explicit gap of exactly the
// records it dropped; a wiped spool and a spool restored from an older copy keep every new
// record and show the restart as a gap; a request to an offline agent fails at its deadline.
// One controller process serves every test (each has its own host); limits are per test. The
// kill -9 test starts that controller twice (its first start and once after kill -9) and the
// agent three times: each kill lands once the stored events show a live stream, not after a
// fixed sleep.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spool } from '../agent/src/link/spool.ts';
import type { ApiClient } from './helpers/api.ts';
import {
  freePort,
  kill,
  removeDir,
  runAgent,
  startTestController,
  tempDir,
  waitFor,
  type ControllerProcess,
  type Proc,
  startControllerProcess,
  enrollThroughApi,
  enrollNewAgent,
} from './helpers/fleet.ts';

interface HostEvent {
  seq: number;
  ts: number;
  kind: string;
  data: Record<string, unknown>;
}
interface Gap {
  fromSeq: number;
  toSeq: number;
  reason: 'lost' | 'restart';
}

const procs: Proc[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let shared: Promise<ControllerProcess> | null = null;

/** The file's controller process (started once), and a new agent state dir enrolled as `name`. */
async function startFleet(name: string) {
  shared ??= startControllerProcess(procs).then((c) => {
    dirs.push(c.dataDir);
    return c;
  });
  const controller = await shared;
  const stateDir = tempDir('keel-agent-');
  dirs.push(stateDir);
  await enrollThroughApi(controller.api, stateDir, name);
  return {
    api: controller.api,
    stateDir,
    id: await hostId(controller.api, name),
    killController: () => controller.kill(),
    startController: () => controller.start(),
  };
}

async function hostId(api: ApiClient, name: string): Promise<string> {
  const { body } = await api.get<{ hosts: { id: string; name: string }[] }>('/hosts');
  const host = body.hosts.find((h) => h.name === name);
  assert.ok(host, `host ${name} enrolled`);
  return host.id;
}

async function allEvents(api: ApiClient, id: string): Promise<{ events: HostEvent[]; gaps: Gap[] }> {
  const events: HostEvent[] = [];
  const gaps: Gap[] = [];
  let after = 0;
  for (;;) {
    const { status, body } = await api.get<{ events: HostEvent[]; gaps: Gap[] }>(
      `/hosts/${id}/events?after=${after}&limit=1000`,
    );
    assert.equal(status, 200);
    events.push(...body.events);
    for (const g of body.gaps) if (!gaps.some((x) => x.fromSeq === g.fromSeq)) gaps.push(g);
    if (body.events.length < 1000) return { events, gaps };
    after = body.events[body.events.length - 1]!.seq;
  }
}

async function spoolState(stateDir: string) {
  const spool = await Spool.open({ dir: join(stateDir, 'spool', 'events') });
  const state = { lastSeq: spool.lastSeq, dropped: spool.droppedRecords };
  await spool.close();
  return state;
}

test(
  'events survive kill -9 of the controller and of the agent: every one stored once, in order',
  { timeout: 180_000 },
  async () => {
    const fleet = await startFleet('kill-9');
    const tick = { KEEL_AGENT_TICK_MS: '5' };
    let agent = runAgent(fleet.stateDir, tick);
    procs.push(agent);
    const id = fleet.id;
    // Each step waits until the agent is connected (under load an agent takes a while to start),
    // then until the controller has stored more of its events, so every kill lands mid-stream on a
    // live session.
    const online = () =>
      waitFor(
        async () => (await fleet.api.get<{ host: { online: boolean } }>(`/hosts/${id}`)).body.host.online,
        20_000,
        'agent online',
      );
    const newest = async () =>
      (await fleet.api.get<{ events: HostEvent[] }>(`/hosts/${id}/events?tail=1`)).body.events.at(-1)?.seq ??
      0;
    const streaming = async () => {
      const from = await newest();
      await waitFor(
        async () => (await newest()) >= from + 100,
        20_000,
        `100 events stored after seq ${from}`,
      );
    };
    await online();
    await streaming();
    await fleet.killController(); // agent keeps emitting into its spool
    await sleep(1500);
    await fleet.startController(); // the spooled events and the live ones after them
    await online();
    await streaming();
    await kill(agent); // kill -9 the agent mid-stream
    agent = runAgent(fleet.stateDir, tick);
    procs.push(agent);
    await online();
    await streaming();
    await kill(agent, 'SIGTERM');
    // Ship what is left in the spool, without new ticks, then stop.
    const { lastSeq } = await spoolState(fleet.stateDir);
    agent = runAgent(fleet.stateDir);
    procs.push(agent);
    const stored = await waitFor(
      async () => {
        const r = await allEvents(fleet.api, id);
        return r.events.length > 0 && r.events[r.events.length - 1]!.seq >= lastSeq ? r : null;
      },
      20_000,
      `all ${lastSeq} events stored`,
    );
    await kill(agent, 'SIGTERM');

    // Exactly once, in order: seq 1..N with no hole and no repeat, and no gap recorded.
    const seqs = stored.events.map((e) => e.seq);
    assert.equal(seqs[0], 1);
    for (let i = 1; i < seqs.length; i++)
      assert.equal(seqs[i], seqs[i - 1]! + 1, `seq ${seqs[i - 1]} then ${seqs[i]}`);
    assert.deepEqual(stored.gaps, []);
    // Within each agent run, ticks count 1, 2, 3… without a hole (a kill -9 may only cut the tail).
    let expected = 0;
    let runs = 0;
    let ticks = 0;
    for (const e of stored.events) {
      if (e.kind === 'agent.started') {
        expected = 1;
        runs++;
      } else if (e.kind === 'tick') {
        assert.equal(e.data.n, expected, `tick ${String(e.data.n)} where ${expected} was due (seq ${e.seq})`);
        expected++;
        ticks++;
      }
    }
    assert.equal(runs, 3);
    assert.ok(ticks > 500, `only ${ticks} ticks`);
    const kinds = new Set(stored.events.map((e) => e.kind));
    for (const k of ['agent.started', 'agent.stopped', 'link.lost', 'link.regained'])
      assert.ok(kinds.has(k), `no ${k} event`);
  },
);

test(
  'a spool filled past its bound records an explicit gap of exactly the dropped records',
  { timeout: 120_000 },
  async () => {
    const fleet = await startFleet('overflow');
    const id = fleet.id;
    // 16 KiB spool, 1 ms ticks, the controller out of reach (the agent is pointed at a closed
    // port, which is cheaper than stopping the shared controller): the spool drops its oldest
    // segments, which shows as its first segment no longer starting at seq 1.
    const enrollment = join(fleet.stateDir, 'enrollment.json');
    const enrolled = readFileSync(enrollment, 'utf8');
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    writeFileSync(enrollment, JSON.stringify({ ...JSON.parse(enrolled), controllerUrl: unreachable }));
    const agent = runAgent(fleet.stateDir, {
      KEEL_AGENT_TICK_MS: '1',
      KEEL_AGENT_SPOOL_BYTES: String(16 * 1024),
    });
    procs.push(agent);
    const spoolDir = join(fleet.stateDir, 'spool', 'events');
    await waitFor(
      () => {
        try {
          const first = readdirSync(spoolDir)
            .filter((f) => f.endsWith('.seg'))
            .sort()[0];
          return first !== undefined && Number(first.replace('.seg', '')) > 1;
        } catch {
          return false;
        }
      },
      60_000,
      'the spool to drop its oldest segment',
    );
    await kill(agent, 'SIGTERM');
    writeFileSync(enrollment, enrolled);
    const { dropped, lastSeq } = await spoolState(fleet.stateDir);
    assert.ok(dropped > 0, 'the spool should have overflowed');
    const shipper = runAgent(fleet.stateDir, { KEEL_AGENT_SPOOL_BYTES: String(16 * 1024) });
    procs.push(shipper);
    const stored = await waitFor(
      async () => {
        const r = await allEvents(fleet.api, id);
        return r.events.length > 0 && r.events[r.events.length - 1]!.seq >= lastSeq ? r : null;
      },
      20_000,
      'events after the gap stored',
    );
    await kill(shipper, 'SIGTERM');
    const lost = stored.gaps.reduce((n, g) => n + (g.toSeq - g.fromSeq + 1), 0);
    assert.ok(stored.gaps.length >= 1);
    assert.equal(lost, dropped, `gaps ${JSON.stringify(stored.gaps)} vs dropped ${dropped}`);
    // Every seq is either stored once or inside a recorded gap.
    const seen = new Set(stored.events.map((e) => e.seq));
    assert.equal(seen.size, stored.events.length);
    for (let s = 1; s <= lastSeq; s++) {
      const inGap = stored.gaps.some((g) => s >= g.fromSeq && s <= g.toSeq);
      assert.ok(seen.has(s) !== inGap, `seq ${s}: stored=${seen.has(s)} gap=${inGap}`);
    }
  },
);

/** Events of a host whose last one (by seq) satisfies `done`, read through the events API. */
async function eventsUntil(
  api: ApiClient,
  id: string,
  done: (last: HostEvent, all: HostEvent[]) => boolean,
  what: string,
): Promise<{ events: HostEvent[]; gaps: Gap[] }> {
  return waitFor(
    async () => {
      const r = await allEvents(api, id);
      const last = r.events.at(-1);
      return last && done(last, r.events) ? r : null;
    },
    60_000,
    what,
  );
}

/** What is stored once nothing more arrives (the agent has exited; its last batch may be in flight). */
async function settled(api: ApiClient, id: string): Promise<{ events: HostEvent[]; gaps: Gap[] }> {
  let last = -1;
  return waitFor(
    async () => {
      const r = await allEvents(api, id);
      const seq = r.events.at(-1)?.seq ?? 0;
      if (seq === last) return r;
      last = seq;
      await sleep(300);
      return null;
    },
    30_000,
    'stored events to settle',
  );
}

/** Runs the agent until its `agent.started` (with its pid) is stored, then stops it (SIGTERM). */
async function runOnce(
  fleet: { api: ApiClient; stateDir: string; id: string },
  env: Record<string, string> = {},
  waitMs = 0,
): Promise<number> {
  const agent = runAgent(fleet.stateDir, env);
  procs.push(agent);
  const pid = agent.child.pid!;
  await eventsUntil(
    fleet.api,
    fleet.id,
    (_last, all) => all.some((e) => e.kind === 'agent.started' && e.data.pid === pid),
    `agent ${pid} started`,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}\nagent (exit ${agent.child.exitCode}): ${agent.output()}`);
  });
  if (waitMs > 0) await sleep(waitMs);
  await kill(agent, 'SIGTERM');
  return pid;
}

test(
  'a wiped spool: the new run is stored in full after a restart gap, nothing before it is lost',
  { timeout: 120_000 },
  async () => {
    const fleet = await startFleet('wiped');
    const first = await runOnce(fleet, { KEEL_AGENT_TICK_MS: '20' }, 500);
    // What the controller holds of the first run; what its spool still held is lost with the wipe.
    const before = await settled(fleet.api, fleet.id);
    rmSync(join(fleet.stateDir, 'spool'), { recursive: true, force: true });

    // The new run numbers from 1 again; before the fix its first events were acked away unsent.
    const agent = runAgent(fleet.stateDir);
    procs.push(agent);
    const second = agent.child.pid!;
    const after = await eventsUntil(
      fleet.api,
      fleet.id,
      (_last, all) => all.some((e) => e.kind === 'agent.started' && e.data.pid === second),
      'the new run stored',
    );
    await kill(agent, 'SIGTERM');
    assert.notEqual(first, second);

    const cut = before.events.at(-1)!.seq;
    // Everything stored before is still there, unchanged.
    assert.deepEqual(after.events.slice(0, before.events.length), before.events);
    // Then one restart gap, then the new run from its very first event.
    const restarts = after.gaps.filter((g) => g.reason === 'restart');
    assert.deepEqual(
      restarts.map((g) => [g.fromSeq, g.toSeq]),
      [[cut + 1, cut + 1]],
    );
    const next = after.events[before.events.length]!;
    assert.equal(next.seq, cut + 2);
    assert.equal(next.kind, 'agent.started');
    assert.equal(next.data.pid, second);
    assert.ok(!after.gaps.some((g) => g.reason === 'lost'), JSON.stringify(after.gaps));
  },
);

test(
  'a spool restored from an older copy: its new records are stored after a restart gap',
  { timeout: 120_000 },
  async () => {
    const fleet = await startFleet('restored');
    await runOnce(fleet);
    await settled(fleet.api, fleet.id);
    const spoolDir = join(fleet.stateDir, 'spool', 'events');
    const backup = tempDir('keel-spool-backup-');
    dirs.push(backup);
    cpSync(spoolDir, backup, { recursive: true });
    // A second run adds more under later numbers than the copy knows.
    await runOnce(fleet, { KEEL_AGENT_TICK_MS: '20' }, 500);
    const before = await settled(fleet.api, fleet.id);
    // Restore the older copy: the next run numbers from where the copy stood.
    rmSync(spoolDir, { recursive: true, force: true });
    cpSync(backup, spoolDir, { recursive: true });
    const agent = runAgent(fleet.stateDir);
    procs.push(agent);
    const third = agent.child.pid!;
    const after = await eventsUntil(
      fleet.api,
      fleet.id,
      (_last, all) => all.some((e) => e.kind === 'agent.started' && e.data.pid === third),
      'the run on the restored spool stored',
    );
    await kill(agent, 'SIGTERM');

    assert.deepEqual(after.events.slice(0, before.events.length), before.events);
    const cut = before.events.at(-1)!.seq;
    assert.deepEqual(
      after.gaps.filter((g) => g.reason === 'restart').map((g) => [g.fromSeq, g.toSeq]),
      [[cut + 1, cut + 1]],
    );
    const next = after.events[before.events.length]!;
    assert.equal(next.seq, cut + 2);
    assert.equal(next.kind, 'agent.started');
    assert.equal(next.data.pid, third);
  },
);

test(
  'a request to an offline agent fails at its deadline with a clear error',
  { timeout: 90_000 },
  async () => {
    const ctl = await startTestController();
    dirs.push(ctl.dataDir);
    try {
      const stateDir = await enrollNewAgent(ctl);
      dirs.push(stateDir);
      const [host] = await ctl.services.hosts.list();
      const started = Date.now();
      await assert.rejects(
        ctl.gateway.request(host!.id, 'ping', {}, { timeoutMs: 700 }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'request.deadline_exceeded');
          assert.match(err.message, /offline/);
          return true;
        },
      );
      assert.ok(Date.now() - started >= 650);
      // Online, the same request is answered.
      const agent = runAgent(stateDir);
      procs.push(agent);
      await waitFor(() => ctl.gateway.isOnline(host!.id), 10_000, 'agent online');
      const pong = await ctl.gateway.request(host!.id, 'ping', {}, { timeoutMs: 5000 });
      assert.ok(typeof pong.agentTime === 'number');
      await kill(agent, 'SIGTERM');
    } finally {
      await ctl.close();
    }
  },
);
