// Proves the per-host sampling interval and the supervised-process series end to end with real
// controller and agent processes: an interval set through the API reaches the running agent at
// once (ticks one second apart without a restart), survives an agent restart (sent again when the
// host comes online), is refused outside 1-60 s and returns to the agent's own setting on null; a
// supervised process's CPU and RSS are stored with each tick and read back as uPlot columns.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApiClient } from './helpers/api.ts';
import { kill, removeDir, runAgent, startFleet, waitFor, type Proc } from './helpers/fleet.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

interface Settings {
  hostId: string;
  intervalSeconds: number | null;
  appliedSeconds: number | null;
  bounds: { min: number; max: number; default: number };
}

/** Tick times (ms) stored after `from`. */
async function ticks(api: ApiClient, id: string, from: number): Promise<number[]> {
  const { status, body } = await api.get<{ data: number[][] }>(
    `/hosts/${id}/metrics?from=${from}&to=${Date.now() + 5_000}&width=10000&series=cpu`,
  );
  assert.equal(status, 200, JSON.stringify(body));
  return body.data[0]!.map((x) => x * 1000);
}

/** Waits for `n` consecutive ticks after `from` that are exactly `stepMs` apart. */
async function consecutive(api: ApiClient, id: string, from: number, n: number, stepMs: number) {
  return waitFor(
    async () => {
      const xs = await ticks(api, id, from);
      let run = 1;
      for (let i = 1; i < xs.length; i++) {
        run = xs[i]! - xs[i - 1]! === stepMs ? run + 1 : 1;
        if (run >= n) return xs;
      }
      return null;
    },
    60_000,
    `${n} ticks ${stepMs} ms apart after ${from}`,
  );
}

test(
  'the interval set from the controller applies live and again after an agent restart',
  { timeout: 240_000 },
  async () => {
    const fleet = await startFleet(procs, dirs, {
      controller: 'process',
      name: 'interval-host',
      agentEnv: { KEEL_AGENT_METRICS_INTERVAL: '10' },
    });
    const { ctl, hostId } = fleet;
    const api = ctl.api;

    const initial = await api.get<Settings>(`/hosts/${hostId}/metrics-settings`);
    assert.equal(initial.status, 200);
    assert.equal(initial.body.intervalSeconds, null, 'nothing set: the agent decides');
    assert.deepEqual(initial.body.bounds, { min: 1, max: 60, default: 5 });

    for (const bad of [0, 61, 1.5, '5']) {
      const r = await api.request<{ error: { code: string } }>('PUT', `/hosts/${hostId}/metrics-settings`, {
        intervalSeconds: bad,
      });
      assert.equal(r.status, 400, `interval ${String(bad)} refused`);
      assert.equal(r.body.error.code, 'request.invalid');
    }

    // A running agent (sampling every 10 s) moves to 1 s without a restart.
    const set = await api.request<Settings>('PUT', `/hosts/${hostId}/metrics-settings`, {
      intervalSeconds: 1,
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal(set.body.intervalSeconds, 1);
    assert.equal(set.body.appliedSeconds, 1, 'the online agent confirmed it');
    const setAt = Date.now();
    await consecutive(api, hostId, setAt, 4, 1_000);
    assert.equal((await api.get<Settings>(`/hosts/${hostId}/metrics-settings`)).body.intervalSeconds, 1);

    // Restarted, the agent starts on its own 10 s, and the controller sends 1 s when it is online.
    await kill(fleet.agent, 'SIGTERM');
    const agent = runAgent(fleet.agentDir, { KEEL_AGENT_METRICS_INTERVAL: '10' });
    procs.push(agent);
    const restartedAt = Date.now();
    await consecutive(api, hostId, restartedAt, 4, 1_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\nagent: ${agent.output().slice(-3000)}`);
    });

    // A supervised process: its CPU and RSS ride in every tick.
    const created = await api.post(`/hosts/${hostId}/processes`, {
      name: 'spinner',
      argv: ['sh', '-c', 'while :; do :; done'],
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const startedAt = Date.now();
    const series = await waitFor(
      async () => {
        const r = await api.get<{
          resolution: string;
          processes: string[];
          cpu: (number | null)[][];
          rss: (number | null)[][];
        }>(`/hosts/${hostId}/metrics/processes?from=${startedAt - 1_000}&width=1000`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const k = r.body.processes.indexOf('spinner');
        if (k < 0) return null;
        const cpu = r.body.cpu[k + 1]!.filter((v): v is number => v !== null);
        const rss = r.body.rss[k + 1]!.filter((v): v is number => v !== null);
        return cpu.some((v) => v > 20) && rss.length > 0 ? { ...r.body, cpu, rss } : null;
      },
      60_000,
      'spinner series with CPU',
    );
    assert.equal(series.resolution, 'raw');
    assert.ok(
      series.rss.every((v) => v > 100_000),
      `RSS in bytes: ${series.rss.join(',')}`,
    );
    assert.ok(
      series.cpu.every((v) => v <= 100 * 64),
      `CPU is % of one core per process: ${series.cpu.join(',')}`,
    );
    await api.post(`/hosts/${hostId}/processes/spinner/stop`);

    // null: back to the agent's own setting (10 s).
    const cleared = await api.request<Settings>('PUT', `/hosts/${hostId}/metrics-settings`, {
      intervalSeconds: null,
    });
    assert.equal(cleared.status, 200);
    assert.equal(cleared.body.appliedSeconds, 10);
    assert.equal(cleared.body.intervalSeconds, null);
  },
);
