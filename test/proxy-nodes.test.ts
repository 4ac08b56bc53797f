// Proves proxy nodes end to end through the REST API with a real controller, three real agents and
// real nginx (Debian): a node's settings applied as generation 1 serve through nginx; a change is
// generation 2; the history and the diff between them show it; rollback is a new generation 3
// that serves the old target again; an older generation pushed straight to the agent is refused;
// a rollout over the three agents halts at the host whose nginx refuses its config (`nginx -t`),
// with each host's progress stored; an edit of the applied file on the host reaches the API as a
// drift diff, overwriting writes the applied content back, adopting stores a generation made by host
// edit; the change stream (SSE) tells a client of a push.
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { KeelError } from '@keel/shared';
import { httpGet } from '../agent/src/configs/adapter.ts';
import type { Controller } from '../controller/src/server.ts';
import { signedInApi, type ApiClient } from './helpers/api.ts';
import {
  enrollNewAgent,
  kill,
  removeDir,
  runAgent,
  startTestController,
  waitFor,
  type Proc,
} from './helpers/fleet.ts';
import { need } from './install-helpers.ts';
import { freePort, httpTarget } from './proxies-agent-setup.ts';

const skip = need('nginx');

interface NodeView {
  instance: string;
  state: string;
  currentGeneration: number | null;
  drift: { path: string; diff: string }[];
}
interface Generation {
  generation: number;
  origin: string;
  outcome: string;
  rollbackOf: number | null;
  files: { path: string; content?: string }[];
  error: { code: string; message: string } | null;
}
interface Rollout {
  id: string;
  state: string;
  haltReason: string | null;
  steps: { hostId: string; state: string; generation: number | null; error: { code: string } | null }[];
}

// Limits are on each test and on the start (not on the suite: the four tests' own limits add up to
// more than a suite limit allowed them on a busy machine, where each still ran within its own).
describe('proxy nodes with real agents and nginx', { skip }, () => {
  let ctl: Controller & { dataDir: string };
  let api: ApiClient;
  const agents: Proc[] = [];
  const dirs: string[] = [];
  const hostIds: string[] = [];
  const ports: number[] = [];
  const targets: { port: number; close(): Promise<void> }[] = [];
  const site = (port: number, upstreamPort: number, extra: Record<string, unknown> = {}) => ({
    listenAddress: '127.0.0.1',
    sites: [
      { serverNames: ['app.example.test'], port, upstream: `http://127.0.0.1:${upstreamPort}`, ...extra },
    ],
  });
  const through = async (port: number) =>
    (await httpGet(`http://127.0.0.1:${port}/`, { host: 'app.example.test' })).body;

  before(
    async () => {
      ctl = await startTestController();
      api = await signedInApi(ctl);
      targets.push(await httpTarget('hello from A'), await httpTarget('hello from B'));
      for (const name of ['edge-1', 'edge-2', 'edge-3']) {
        const dir = await enrollNewAgent(ctl, name);
        dirs.push(dir);
        agents.push(runAgent(dir));
        ports.push(await freePort());
      }
      const { body } = await api.get<{ hosts: { id: string; name: string; online: boolean }[] }>('/hosts');
      for (const name of ['edge-1', 'edge-2', 'edge-3'])
        hostIds.push(body.hosts.find((h) => h.name === name)!.id);
      await waitFor(() => hostIds.every((id) => ctl.gateway.isOnline(id)), 60_000, 'three agents online');
    },
    { timeout: 120_000 },
  );
  after(async () => {
    for (const a of agents) await kill(a, 'SIGTERM');
    await ctl?.close();
    for (const t of targets) await t.close();
    for (const d of dirs) removeDir(d);
    if (ctl) removeDir(ctl.dataDir);
  });

  test(
    'apply, history, diff, rollback as a new generation, stale push refused',
    { timeout: 120_000 },
    async () => {
      const [h] = hostIds;
      const [a, b] = targets;
      const created = await api.post<{ node: NodeView; generation: Generation }>(`/hosts/${h}/proxies`, {
        instance: 'edge',
        adapter: 'nginx',
        settings: site(ports[0]!, a!.port),
        apply: true,
        reason: 'first site',
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.generation.generation, 1);
      assert.equal(created.body.generation.outcome, 'applied');
      assert.equal(created.body.node.currentGeneration, 1);
      assert.equal(await through(ports[0]!), 'hello from A');

      const changed = await api.request<{ node: NodeView; generation: Generation }>(
        'PUT',
        `/hosts/${h}/proxies/edge`,
        {
          settings: site(ports[0]!, b!.port),
          apply: true,
          reason: 'move to B',
        },
      );
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      assert.equal(changed.body.generation.generation, 2);
      assert.equal(await through(ports[0]!), 'hello from B');

      const history = await api.get<{ generations: Generation[] }>(`/hosts/${h}/proxies/edge/generations`);
      assert.deepEqual(
        history.body.generations.map((g) => [g.generation, g.outcome]),
        [
          [2, 'applied'],
          [1, 'applied'],
        ],
      );
      const full = await api.get<{ generation: Generation }>(`/hosts/${h}/proxies/edge/generations/1`);
      assert.match(
        full.body.generation.files[0]!.content!,
        new RegExp(`proxy_pass http://127\\.0\\.0\\.1:${a!.port};`),
      );

      const diff = await api.get<{ parts: { kind: string; status: string; diff: string }[] }>(
        `/hosts/${h}/proxies/edge/diff?from=1&to=2`,
      );
      const file = diff.body.parts.find((p) => p.kind === 'file')!;
      assert.equal(file.status, 'changed');
      assert.match(file.diff, new RegExp(`^-.*proxy_pass http://127\\.0\\.0\\.1:${a!.port};`, 'm'));
      assert.match(file.diff, new RegExp(`^\\+.*proxy_pass http://127\\.0\\.0\\.1:${b!.port};`, 'm'));

      const rolled = await api.post<{ generation: Generation }>(`/hosts/${h}/proxies/edge/rollback`, {
        generation: 1,
      });
      assert.equal(rolled.status, 200, JSON.stringify(rolled.body));
      assert.equal(rolled.body.generation.generation, 3);
      assert.equal(rolled.body.generation.origin, 'rollback');
      assert.equal(rolled.body.generation.rollbackOf, 1);
      assert.equal(await through(ports[0]!), 'hello from A');

      // An older generation sent straight to the agent (a late or replayed push) is refused.
      await assert.rejects(
        ctl.gateway.request(h!, 'config.apply', {
          instance: 'edge',
          adapter: 'nginx',
          generation: 2,
          settings: site(ports[0]!, b!.port),
          users: [],
        }),
        (err: unknown) => err instanceof KeelError && err.code === 'config.stale_generation',
      );
      assert.equal(await through(ports[0]!), 'hello from A');
    },
  );

  test(
    'a rollout over three agents halts at the host whose nginx refuses the config',
    { timeout: 120_000 },
    async () => {
      const [a] = targets;
      // Host 2's node points at a certificate that is not there: the settings are well-formed, but
      // `nginx -t` on that host refuses them.
      for (const [i, h] of hostIds.entries()) {
        if (i === 0) continue;
        const extra =
          i === 1
            ? { tls: { certificatePath: '/nonexistent/cert.pem', keyPath: '/nonexistent/key.pem' } }
            : {};
        const r = await api.post(`/hosts/${h}/proxies`, {
          instance: 'edge',
          adapter: 'nginx',
          settings: site(ports[i]!, a!.port, extra),
        });
        assert.equal(r.status, 201, JSON.stringify(r.body));
      }
      const started = await api.post<{ rollout: Rollout }>('/proxies/rollouts', {
        targets: hostIds.map((hostId) => ({ hostId, instance: 'edge' })),
        canary: 1,
        batchSize: 1,
        reason: 'rollout test',
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const id = started.body.rollout.id;
      const done = await waitFor(
        async () => {
          const r = (await api.get<{ rollout: Rollout }>(`/proxies/rollouts/${id}`)).body.rollout;
          return r.state !== 'running' ? r : null;
        },
        90_000,
        'the rollout to stop',
      );
      assert.equal(done.state, 'halted');
      assert.deepEqual(
        done.steps.map((s) => s.state),
        ['applied', 'failed', 'pending'],
      );
      assert.equal(done.steps[0]!.generation, 4, 'host 1 got its next generation');
      assert.equal(done.steps[1]!.error?.code, 'config.invalid');
      assert.match(done.haltReason!, /edge-2\/edge: config\.invalid/);
      assert.equal(done.steps[2]!.generation, null, 'host 3 was never pushed');
      const third = await api.get<{ node: NodeView }>(`/hosts/${hostIds[2]}/proxies/edge`);
      assert.equal(third.body.node.currentGeneration, null);
      const second = await api.get<{ generations: Generation[] }>(
        `/hosts/${hostIds[1]}/proxies/edge/generations`,
      );
      assert.equal(second.body.generations[0]!.outcome, 'refused');
      assert.match(second.body.generations[0]!.error!.message, /nginx|cert/i);
      const list = await api.get<{ rollouts: Rollout[] }>('/proxies/rollouts');
      assert.equal(list.body.rollouts[0]!.id, id);
    },
  );

  test(
    'an edit of the applied file on the host shows as a diff; overwrite writes it back, adopt makes a host-edit generation',
    { timeout: 60_000 },
    async () => {
      const [h] = hostIds;
      const current = (await api.get<{ node: NodeView }>(`/hosts/${h}/proxies/edge`)).body.node
        .currentGeneration!;
      const gen = (
        await api.get<{ generation: Generation }>(`/hosts/${h}/proxies/edge/generations/${current}`)
      ).body.generation;
      const driftOnNode = () =>
        waitFor(
          async () => {
            const n = (await api.get<{ node: NodeView }>(`/hosts/${h}/proxies/edge`)).body.node;
            return n.drift.length > 0 ? n : null;
          },
          30_000,
          'drift on the node',
        );
      // Overwrite: the applied content is written back and the drift is gone.
      appendFileSync(gen.files[0]!.path, '# a mistake\n');
      assert.match((await driftOnNode()).drift[0]!.diff, /^\+# a mistake$/m);
      const over = await api.post<{ node: NodeView }>(`/hosts/${h}/proxies/edge/drift`, {
        action: 'overwrite',
      });
      assert.equal(over.status, 200, JSON.stringify(over.body));
      assert.equal(over.body.node.drift.length, 0);
      assert.equal(over.body.node.currentGeneration, current, 'overwrite makes no generation');
      assert.equal(readFileSync(gen.files[0]!.path, 'utf8'), gen.files[0]!.content);

      appendFileSync(gen.files[0]!.path, '# tuned by hand\n');
      // The agent's config.drift event arrives on the events stream and is stored on the node.
      const node = await waitFor(
        async () => {
          const n = (await api.get<{ node: NodeView }>(`/hosts/${h}/proxies/edge`)).body.node;
          return n.drift.length > 0 ? n : null;
        },
        30_000,
        'drift on the node',
      );
      assert.equal(node.drift[0]!.path, gen.files[0]!.path);
      assert.match(node.drift[0]!.diff, /^\+# tuned by hand$/m);
      const live = await api.get<{ node: NodeView }>(`/hosts/${h}/proxies/edge/drift`);
      assert.match(live.body.node.drift[0]!.diff, /\+# tuned by hand/);

      const adopted = await api.post<{ node: NodeView }>(`/hosts/${h}/proxies/edge/drift`, {
        action: 'adopt',
      });
      assert.equal(adopted.status, 200, JSON.stringify(adopted.body));
      assert.equal(adopted.body.node.drift.length, 0);
      assert.equal(adopted.body.node.currentGeneration, current + 1);
      const made = (
        await api.get<{ generation: Generation }>(`/hosts/${h}/proxies/edge/generations/${current + 1}`)
      ).body.generation;
      assert.equal(made.origin, 'host-edit');
      assert.match(made.files[0]!.content!, /# tuned by hand/);
    },
  );

  test('GET /proxies/events tells an EventSource client of a push', { timeout: 60_000 }, async () => {
    const plain = await api.fetchRaw('/proxies/events');
    assert.equal(plain.status, 400, 'not an event-stream client: refused, not held open');
    const ctrl = new AbortController();
    const res = await api.fetchRaw('/proxies/events', {
      headers: { accept: 'text/event-stream' },
      signal: ctrl.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = '';
    const read = async (until: RegExp) => {
      while (!until.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    };
    await read(/event: ready/);
    const pushed = await api.post(`/hosts/${hostIds[0]}/proxies/edge/apply`, { reason: 'stream test' });
    assert.equal(pushed.status, 200, JSON.stringify(pushed.body));
    await read(/event: node\ndata: \{"hostId":"[0-9a-f-]+","instance":"edge"\}/);
    assert.match(text, new RegExp(`"hostId":"${hostIds[0]}"`));
    ctrl.abort();
  });
});
