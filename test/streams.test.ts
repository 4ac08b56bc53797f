// Proves streams end to end with real processes: an agent emitting numbered events while the
// controller and then the agent itself are killed -9 and restarted loses nothing and stores
// nothing twice, in order; an overfilled spool shows up as an explicit gap of exactly the
// records it dropped; a request to an offline agent fails at its deadline.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Spool } from '../agent/src/link/spool.ts';
import type { ApiClient } from './helpers/api.ts';
import {
  kill,
  removeDir,
  runAgent,
  startTestController,
  tempDir,
  waitFor,
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
}

const procs: Proc[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startFleet() {
  const stateDir = tempDir('keel-agent-');
  const controller = await startControllerProcess(procs);
  dirs.push(controller.dataDir, stateDir);
  await enrollThroughApi(controller.api, stateDir);
  return {
    api: controller.api,
    stateDir,
    restartController: () => controller.restart(),
    killController: () => controller.kill(),
    startController: () => controller.start(),
  };
}

async function hostId(api: ApiClient): Promise<string> {
  const { body } = await api.get<{ hosts: { id: string }[] }>('/hosts');
  return body.hosts[0]!.id;
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

test('events survive kill -9 of the controller and of the agent: every one stored once, in order', async () => {
  const fleet = await startFleet();
  const tick = { KEEL_AGENT_TICK_MS: '5' };
  let agent = runAgent(fleet.stateDir, tick);
  procs.push(agent);
  const id = await hostId(fleet.api);
  // Each step waits until the agent is connected (under load an agent takes a while to start), then
  // lets it stream for a moment, so every kill lands mid-stream on a live session.
  const online = () =>
    waitFor(
      async () => (await fleet.api.get<{ host: { online: boolean } }>(`/hosts/${id}`)).body.host.online,
      20_000,
      'agent online',
    );
  await online();
  await sleep(1000);
  await fleet.killController(); // agent keeps emitting into its spool
  await sleep(1500);
  await fleet.startController();
  await online();
  await sleep(1000);
  await kill(agent); // kill -9 the agent mid-stream
  agent = runAgent(fleet.stateDir, tick);
  procs.push(agent);
  await online();
  await sleep(1000);
  await fleet.restartController(); // and the controller once more
  await online();
  await sleep(1000);
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
});

test('a spool filled past its bound records an explicit gap of exactly the dropped records', async () => {
  const fleet = await startFleet();
  const id = await hostId(fleet.api);
  await fleet.killController();
  // 16 KiB spool, 1 ms ticks, controller down: the spool must drop its oldest segments.
  const agent = runAgent(fleet.stateDir, {
    KEEL_AGENT_TICK_MS: '1',
    KEEL_AGENT_SPOOL_BYTES: String(16 * 1024),
  });
  procs.push(agent);
  await sleep(2500);
  await kill(agent, 'SIGTERM');
  const { dropped, lastSeq } = await spoolState(fleet.stateDir);
  assert.ok(dropped > 0, 'the spool should have overflowed');
  await fleet.startController();
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
});

test('a request to an offline agent fails at its deadline with a clear error', async () => {
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
});
