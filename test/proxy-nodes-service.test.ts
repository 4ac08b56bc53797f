// Proves the proxy nodes service and repository on every test driver, against a stand-in agent
// gateway (named so: the real agent is in test/proxy-nodes.test.ts) that keeps its own applied
// generation per instance as the real one does: settings are validated with the adapter schema;
// every push gets the next number and is stored with its files and outcome (applied, refused);
// pushes at once get distinct numbers in order; rollback is a new generation with the old
// settings; a recreated node continues the numbering; diff shows files, settings and users; a
// rollout halts at the first failing host with its progress stored, resumes, and one cut off by a
// controller stop is halted and resumable (once its heartbeat is stale: a replica starting beside
// the live one leaves its rollout and pending push alone); a rollout aimed at a host group or a tag takes every
// matching node (only those of the adapter with settings; a scoped operator's reach only), audited
// with the group or tag; drift events from the bus are stored and adopted as a
// host-edit generation; old generations are pruned past the kept number; permissions (viewer reads only, a host outside the actor's grants is 404).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { KeelError, type ProxyUserSpec } from '@keel/shared';
import { createLocalBus, type FleetBus } from '../controller/src/bus/index.ts';
import type { Db } from '../controller/src/db/index.ts';
import { testDatabaseTargets, type TestDatabase } from '../controller/src/db/test-databases.ts';
import type { AgentGateway, AgentRequestMap, AgentRequestMethod } from '../controller/src/gateway/types.ts';
import { createAuditRepository } from '../controller/src/repositories/audit.ts';
import { createGroupsRepository } from '../controller/src/repositories/groups.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { createJoinTokenRepository } from '../controller/src/repositories/join-tokens.ts';
import { createProxyNodeRepository } from '../controller/src/repositories/proxy-nodes.ts';
import { actorOf } from '../controller/src/services/access.ts';
import { createAuditService } from '../controller/src/services/audit.ts';
import {
  createProxyNodesService,
  type ProxyNodesService,
  type ProxyUserActor,
} from '../controller/src/services/proxy-nodes.ts';
import { sampleFacts } from './helpers/facts.ts';

type Params<M extends AgentRequestMethod> = AgentRequestMap[M]['params'];

/** Stand-in for the agent side of config.*: per host and instance, the applied generation and files. */
class StandInConfigAgents implements AgentGateway {
  online = new Set<string>();
  applied = new Map<
    string,
    { generation: number; files: { path: string; sha256: string; content: string }[] }
  >();
  /** Hosts whose proxy refuses every configuration (as `nginx -t` would). */
  refusing = new Set<string>();
  /** Pushes wait for this before answering (to hold a rollout mid-way). */
  gate: Promise<void> = Promise.resolve();
  pushes: { hostId: string; generation: number; users: string[] }[] = [];
  drift = new Map<string, { path: string; diff: string }[]>();

  async request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    params: AgentRequestMap[M]['params'],
  ): Promise<AgentRequestMap[M]['result']> {
    if (!this.online.has(hostId)) throw new KeelError('request.disconnected');
    if (method === 'config.apply') {
      const p = params as Params<'config.apply'>;
      this.pushes.push({ hostId, generation: p.generation, users: (p.users ?? []).map((u) => u.id) });
      await this.gate;
      const key = `${hostId}/${p.instance}`;
      const current = this.applied.get(key);
      if (current && p.generation <= current.generation) throw new KeelError('config.stale_generation');
      if (this.refusing.has(hostId)) {
        throw new KeelError('config.invalid', 'nginx: [emerg] unknown directive "bogus" (stand-in)');
      }
      const content = `# ${p.adapter} ${p.instance}\n${JSON.stringify(p.settings, null, 1)}\nusers: ${(p.users ?? []).map((u) => u.id).join(',')}\n`;
      const files = [{ path: `/etc/keel/proxies/${p.instance}/site.conf`, sha256: 'a'.repeat(64), content }];
      this.applied.set(key, { generation: p.generation, files });
      return {
        instance: p.instance,
        generation: p.generation,
        method: 'reload',
        files,
        appliedAt: Date.now(),
      } as never;
    }
    if (method === 'config.status') {
      return {
        instances: [...this.applied.entries()]
          .filter(([k]) => k.startsWith(`${hostId}/`))
          .map(([k, v]) => ({
            instance: k.split('/')[1]!,
            adapter: 'nginx',
            generation: v.generation,
            appliedAt: 1,
            files: v.files.map(({ path, sha256 }) => ({ path, sha256 })),
            drift: this.drift.get(k) ?? [],
          })),
      } as never;
    }
    if (method === 'config.drift.resolve') {
      const p = params as Params<'config.drift.resolve'>;
      const key = `${hostId}/${p.instance}`;
      const current = this.applied.get(key)!;
      const files = current.files.map((f) => ({ ...f, content: f.content + '# edited on the host\n' }));
      if (p.action === 'adopt') this.applied.set(key, { ...current, files });
      this.drift.delete(key);
      return { instance: p.instance, generation: current.generation, action: p.action, files } as never;
    }
    throw new KeelError('request.unknown_method');
  }
  disconnect(): boolean {
    return false;
  }
  isOnline(hostId: string): boolean {
    return this.online.has(hostId);
  }
}

const site = (name: string) => ({ sites: [{ serverNames: [name], port: 8080, root: '/srv/www' }] });

for (const target of testDatabaseTargets()) {
  describe(`proxy nodes service (${target.driver})`, () => {
    let testDb: TestDatabase;
    let db: Db;
    let bus: FleetBus;
    let agents: StandInConfigAgents;
    let service: ProxyNodesService;
    const hostIds: string[] = [];
    let users: ProxyUserSpec[] = [];
    const owner: ProxyUserActor = { id: 'owner-1', role: 'owner', ip: '127.0.0.1' };
    const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));

    const make = (keepGenerations?: number, now?: () => number) =>
      createProxyNodesService({
        keepGenerations,
        now,
        hosts: createHostRepository(db),
        nodes: createProxyNodeRepository(db),
        groups: createGroupsRepository(db),
        gateway: agents,
        audit: createAuditService({ audit: createAuditRepository(db), log }),
        bus,
        log,
        usersForNode: async () => users,
      });

    before(async () => {
      testDb = await target.create();
      db = (await testDb.open()).db;
      bus = createLocalBus();
      agents = new StandInConfigAgents();
      for (const name of ['edge-1', 'edge-2', 'edge-3']) {
        const { secret } = await createJoinTokenRepository(db).create({ ttlSeconds: 600 });
        const host = await createHostRepository(db).enroll({
          publicKey: randomBytes(32).toString('base64url'),
          name,
          facts: sampleFacts,
          tokenSecret: secret,
        });
        hostIds.push(host.id);
        agents.online.add(host.id);
      }
      service = make();
      await service.start();
    });
    after(async () => {
      await service.stop();
      await testDb.cleanup();
    });

    test('settings are validated with the adapter schema; a push is generation 1, stored applied with its files', async () => {
      const h = hostIds[0]!;
      await assert.rejects(
        service.create(owner, h, { instance: 'web', adapter: 'nginx', settings: { sites: [] } }),
        (e: unknown) =>
          e instanceof KeelError && e.code === 'request.invalid' && /settings\.sites/.test(e.message),
      );
      await assert.rejects(
        service.create(owner, h, { instance: 'Bad Name', adapter: 'nginx', settings: site('a.test') }),
        (e: unknown) => e instanceof KeelError && e.code === 'request.invalid',
      );
      const node = await service.create(owner, h, {
        instance: 'web',
        adapter: 'nginx',
        settings: site('a.test'),
      });
      assert.equal(node.state, 'pending');
      assert.equal(
        (node.settings as { listenAddress: string }).listenAddress,
        '0.0.0.0',
        'defaults filled in',
      );
      await assert.rejects(
        service.create(owner, h, { instance: 'web', adapter: 'nginx', settings: site('a.test') }),
        (e: unknown) => e instanceof KeelError && e.code === 'proxy.node_exists',
      );
      users = [{ id: 'alice', password: 'alice-password-1' }];
      const g1 = await service.apply(owner, h, 'web', { reason: 'first site' });
      assert.equal(g1.generation, 1);
      assert.equal(g1.outcome, 'applied');
      assert.equal(g1.method, 'reload');
      assert.deepEqual(g1.userIds, ['alice']);
      assert.equal(g1.reason, 'first site');
      assert.equal(g1.actor, 'owner-1');
      const full = await service.generation(owner, h, 'web', 1);
      assert.match(full.files[0]!.content!, /a\.test/);
      const after1 = await service.get(owner, h, 'web');
      assert.equal(after1.state, 'applied');
      assert.equal(after1.latest?.generation, 1);
      assert.equal(
        (await service.list(owner, h))[0]!.latest?.generation,
        1,
        'the host list reads the newest',
      );
      assert.equal((await service.list(owner)).find((n) => n.hostId === h)!.latest?.outcome, 'applied');
      assert.equal(after1.currentGeneration, 1);
      const rows = await createAuditRepository(db).list({ limit: 50 });
      assert.ok(
        rows.some(
          (r) => r.action === 'config.apply' && (r.detail as { generation?: number }).generation === 1,
        ),
        'the push is audited',
      );
      assert.ok(rows.some((r) => r.action === 'proxy.node.create'));
    });

    test('pushes at once get distinct numbers and reach the agent in order', async () => {
      const h = hostIds[0]!;
      const before = agents.pushes.length;
      const results = await Promise.all([1, 2, 3, 4].map(() => service.apply(owner, h, 'web')));
      // Which caller gets which number depends on who is queued first; the numbers are distinct.
      assert.deepEqual(
        results.map((r) => r.generation).sort((a, b) => a - b),
        [2, 3, 4, 5],
      );
      assert.deepEqual(
        agents.pushes.slice(before).map((p) => p.generation),
        [2, 3, 4, 5],
      );
      assert.ok(results.every((r) => r.outcome === 'applied'));
    });

    test('diff, rollback as a new generation, a refused push stored with its error', async () => {
      const h = hostIds[0]!;
      await service.update(owner, h, 'web', { settings: site('b.test') });
      users = [
        { id: 'alice', password: 'alice-password-1' },
        { id: 'bob', password: 'bob-password-12' },
      ];
      const g6 = await service.apply(owner, h, 'web');
      assert.equal(g6.generation, 6);
      const d = await service.diff(owner, h, 'web', 1, 6);
      const file = d.parts.find((p) => p.kind === 'file')!;
      assert.equal(file.status, 'changed');
      assert.match(file.diff, /^-.*a\.test/m);
      assert.match(file.diff, /^\+.*b\.test/m);
      assert.match(d.parts.find((p) => p.kind === 'users')!.diff, /^\+bob$/m);
      assert.equal(d.parts.find((p) => p.kind === 'settings')!.status, 'changed');

      const g7 = await service.rollback(owner, h, 'web', 1);
      assert.equal(g7.generation, 7, 'a rollback is a new, higher generation');
      assert.equal(g7.origin, 'rollback');
      assert.equal(g7.rollbackOf, 1);
      assert.deepEqual(g7.settings, (await service.generation(owner, h, 'web', 1)).settings);
      assert.deepEqual(g7.userIds, ['alice', 'bob'], "today's users, not generation 1's");
      assert.deepEqual((await service.get(owner, h, 'web')).settings, g7.settings);
      assert.equal(
        (await service.diff(owner, h, 'web', 1, 7)).parts.find((p) => p.kind === 'settings')!.status,
        'unchanged',
      );

      agents.refusing.add(h);
      await assert.rejects(
        service.apply(owner, h, 'web'),
        (e: unknown) => e instanceof KeelError && e.code === 'config.invalid',
      );
      agents.refusing.delete(h);
      const [g8] = await service.generations(owner, h, 'web', { limit: 1 });
      assert.equal(g8!.generation, 8);
      assert.equal(g8!.outcome, 'refused');
      assert.equal(g8!.error?.code, 'config.invalid');
      assert.match(g8!.error!.message, /unknown directive/);
      const node = await service.get(owner, h, 'web');
      assert.equal(node.state, 'failed');
      assert.equal(node.currentGeneration, 7, 'the host still runs 7');
      await assert.rejects(
        service.rollback(owner, h, 'web', 99),
        (e: unknown) => e instanceof KeelError && e.code === 'proxy.generation_not_found',
      );
    });

    test('a node made again after a delete continues the numbering (the agent never sees a number twice)', async () => {
      const h = hostIds[0]!;
      await service.remove(owner, h, 'web');
      await assert.rejects(
        service.get(owner, h, 'web'),
        (e: unknown) => e instanceof KeelError && e.code === 'proxy.node_not_found',
      );
      await service.create(owner, h, { instance: 'web', adapter: 'nginx', settings: site('c.test') });
      const g = await service.apply(owner, h, 'web');
      assert.equal(g.generation, 9);
      assert.equal(g.outcome, 'applied');
      assert.equal((await service.generations(owner, h, 'web', { limit: 100 })).length, 9, 'history kept');
    });

    test('a stale refusal is stored as refused and moves the counter past what the agent runs', async () => {
      const h = hostIds[0]!;
      agents.applied.set(`${h}/web`, { ...agents.applied.get(`${h}/web`)!, generation: 20 });
      await assert.rejects(
        service.apply(owner, h, 'web'),
        (e: unknown) => e instanceof KeelError && e.code === 'config.stale_generation',
      );
      const [refused] = await service.generations(owner, h, 'web', { limit: 1 });
      assert.equal(refused!.generation, 10);
      assert.equal(refused!.outcome, 'refused');
      const next = await service.apply(owner, h, 'web');
      assert.equal(next.generation, 21);
    });

    test('a rollout halts at the first failing host with progress stored, and resumes', async () => {
      for (const h of hostIds) {
        await service.create(owner, h, { instance: 'edge', adapter: 'nginx', settings: site('old.test') });
      }
      agents.refusing.add(hostIds[1]!);
      const started = await service.startRollout(owner, {
        targets: hostIds.map((hostId) => ({ hostId, instance: 'edge' })),
        adapter: 'nginx',
        settings: site('new.test'),
        canary: 1,
        batchSize: 1,
        reason: 'move to new.test',
      });
      assert.deepEqual(
        started.steps.map((s) => s.stage),
        [0, 1, 2],
      );
      await service.settled();
      let r = await service.rollout(owner, started.id);
      assert.equal(r.state, 'halted');
      assert.deepEqual(
        r.steps.map((s) => s.state),
        ['applied', 'failed', 'pending'],
      );
      assert.equal(r.steps[1]!.error?.code, 'config.invalid');
      assert.match(r.haltReason!, /edge-2\/edge: config\.invalid/);
      assert.equal(r.steps[0]!.generation, 1);
      assert.match(JSON.stringify((await service.get(owner, hostIds[0]!, 'edge')).settings), /new\.test/);
      // The failed host keeps its old settings; the untouched one too.
      assert.match(JSON.stringify((await service.get(owner, hostIds[1]!, 'edge')).settings), /old\.test/);
      assert.match(JSON.stringify((await service.get(owner, hostIds[2]!, 'edge')).settings), /old\.test/);

      agents.refusing.delete(hostIds[1]!);
      await service.resumeRollout(owner, started.id);
      await service.settled();
      r = await service.rollout(owner, started.id);
      assert.equal(r.state, 'completed');
      assert.deepEqual(
        r.steps.map((s) => s.state),
        ['applied', 'applied', 'applied'],
      );
      await assert.rejects(
        service.resumeRollout(owner, started.id),
        (e: unknown) => e instanceof KeelError && e.code === 'proxy.rollout_state',
      );
    });

    test('a rollout cut off by a controller stop is halted at the next start, and resumes', async () => {
      let release!: () => void;
      agents.gate = new Promise((resolve) => (release = resolve));
      const pushedBefore = agents.pushes.length;
      const started = await service.startRollout(owner, {
        targets: hostIds.map((hostId) => ({ hostId, instance: 'edge' })),
        canary: 1,
        batchSize: 2,
      });
      while (agents.pushes.length === pushedBefore) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // Another replica starting while this one runs the rollout (heartbeat fresh) leaves it and its
      // pending push alone.
      const peer = make();
      await peer.start();
      assert.equal(
        (await peer.rollout(owner, started.id)).state,
        'running',
        'a live replica keeps its rollout',
      );
      const [inFlight] = await peer.generations(owner, hostIds[0]!, 'edge', { limit: 1 });
      assert.equal(inFlight!.outcome, 'pending', "a live replica's push is not failed");
      await peer.stop();
      // The canary's push is in flight when "the controller stops": the next controller run starts
      // after the heartbeat went stale and the push passed its deadline (its clock 3 minutes on).
      const next = make(undefined, () => Date.now() + 180_000);
      await next.start();
      let r = await next.rollout(owner, started.id);
      assert.equal(r.state, 'halted');
      assert.match(r.haltReason!, /controller stopped/);
      assert.deepEqual(
        r.steps.map((s) => s.state),
        ['interrupted', 'pending', 'pending'],
      );
      const [pending] = await next.generations(owner, hostIds[0]!, 'edge', { limit: 1 });
      assert.equal(pending!.outcome, 'failed', 'a push with no answer before the stop is not left pending');
      release();
      agents.gate = Promise.resolve();
      await service.settled(); // the old run's stage ends; the rollout is no longer `running` for it
      await next.resumeRollout(owner, started.id);
      await next.settled();
      r = await next.rollout(owner, started.id);
      assert.equal(r.state, 'completed');
      assert.deepEqual(
        r.steps.map((s) => s.state),
        ['applied', 'applied', 'applied'],
      );
      await next.stop();
    });

    test("a rollout aimed at a host group or a tag takes its nodes, within the actor's reach, audited", async () => {
      const groups = createGroupsRepository(db);
      const audit = createAuditRepository(db);
      // edge-1 and edge-3 carry the tag; the group has edge-2 by hand and the tag's hosts.
      await groups.setHostTags(hostIds[0]!, ['tier-a']);
      await groups.setHostTags(hostIds[2]!, ['tier-a']);
      const group = (await groups.create({ name: 'proxies-a', description: '', tags: ['tier-a'] }))!;
      await groups.setMembers(group.id, [hostIds[1]!]);
      // A second instance of another adapter on edge-1: a group push of nginx settings leaves it out.
      await service.create(owner, hostIds[0]!, {
        instance: 'mt',
        adapter: 'telemt',
        settings: { tlsDomain: 'www.example.com', port: 8443 },
      });
      const stepsOf = (r: { steps: { hostId: string; instance: string }[] }) =>
        r.steps.map((s) => `${hostIds.indexOf(s.hostId)}/${s.instance}`);

      const byTag = await service.startRollout(owner, { tag: 'tier-a', instance: 'edge', batchSize: 5 });
      assert.deepEqual(stepsOf(byTag), ['0/edge', '2/edge']);
      assert.equal(byTag.reason, 'rollout to tag tier-a, instance edge');
      await service.settled();
      assert.equal((await service.rollout(owner, byTag.id)).state, 'completed');

      const byGroup = await service.startRollout(owner, {
        groupId: group.id,
        adapter: 'nginx',
        settings: site('group.test'),
      });
      assert.deepEqual(stepsOf(byGroup), ['0/edge', '0/web', '1/edge', '2/edge'], 'nginx nodes only, not mt');
      await service.settled();
      assert.equal((await service.rollout(owner, byGroup.id)).state, 'completed');
      for (const h of hostIds)
        assert.match(JSON.stringify((await service.get(owner, h, 'edge')).settings), /group\.test/);
      assert.match(JSON.stringify((await service.get(owner, hostIds[0]!, 'mt')).settings), /example\.com/);

      // A scoped operator granted edge-3 only: the group reaches just that host; the rest is counted.
      const scoped = {
        ...actorOf({ id: 'op-2', role: 'operator', scoped: true }, [
          { hostId: hostIds[2]!, role: 'operator' },
        ]),
        ip: null,
      };
      const mine = await service.startRollout(scoped, { groupId: group.id, instance: 'edge' });
      assert.deepEqual(stepsOf(mine), ['2/edge']);
      await service.settled();
      const entries = (await audit.recent(20)).filter((e) => e.action === 'config.rollout.start');
      const scopedEntry = entries.find((e) => (e.detail as { rollout?: string }).rollout === mine.id)!;
      assert.equal(scopedEntry.actor, 'op-2');
      assert.deepEqual(
        {
          groupId: (scopedEntry.detail as Record<string, unknown>).groupId,
          leftOut: (scopedEntry.detail as Record<string, unknown>).leftOut,
        },
        { groupId: group.id, leftOut: 2 },
      );
      const tagEntry = entries.find((e) => (e.detail as { rollout?: string }).rollout === byTag.id)!;
      assert.equal((tagEntry.detail as { tag?: string }).tag, 'tier-a');

      // Exactly one kind of target; an unknown group; a tag without nodes.
      await assert.rejects(
        service.startRollout(owner, { tag: 'tier-a', targets: [{ hostId: hostIds[0]!, instance: 'edge' }] }),
        (e: unknown) => e instanceof KeelError && e.code === 'request.invalid',
      );
      await assert.rejects(
        service.startRollout(owner, { groupId: '00000000-0000-4000-8000-000000000000' }),
        (e: unknown) => e instanceof KeelError && e.code === 'group.not_found',
      );
      await assert.rejects(
        service.startRollout(owner, { tag: 'nobody-has-this' }),
        (e: unknown) =>
          e instanceof KeelError && e.code === 'request.invalid' && /no proxy node/.test(e.message),
      );
      await service.remove(owner, hostIds[0]!, 'mt');
    });

    test('drift events from the bus are stored, read from the agent, and adopted as a host-edit generation', async () => {
      const h = hostIds[2]!;
      const path = '/etc/keel/proxies/edge/site.conf';
      const diff = `--- ${path}\n+++ ${path}\n@@ -1 +1,2 @@\n x\n+# edited\n`;
      const payload = Buffer.from(JSON.stringify({ kind: 'config.drift', instance: 'edge', path, diff }));
      const ts = Date.now() + 1000;
      const published = (seq: number, body: Buffer) =>
        bus.publish({
          type: 'stream.stored',
          hostId: h,
          stream: 'events',
          ackedSeq: seq,
          records: [{ seq, ts, payload: body }],
        });
      const settledDrift = async (count: number) => {
        let n = await service.get(owner, h, 'edge');
        for (let i = 0; i < 100 && n.drift.length !== count; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          n = await service.get(owner, h, 'edge');
        }
        return n;
      };
      // A replayed event of drift the agent no longer has: its status (asked on each event) wins.
      published(100, payload);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal((await service.get(owner, h, 'edge')).drift.length, 0, 'the agent reports no drift');
      // The agent cannot be asked: the event itself is stored.
      agents.online.delete(h);
      published(101, payload);
      assert.equal((await settledDrift(1)).drift[0]!.path, path);
      agents.online.add(h);
      await service.resolveDrift(owner, h, 'edge', 'overwrite');
      assert.equal((await service.get(owner, h, 'edge')).drift.length, 0, 'overwrite clears it');

      agents.drift.set(`${h}/edge`, [{ path, diff }]);
      bus.publish({
        type: 'stream.stored',
        hostId: h,
        stream: 'events',
        ackedSeq: 1,
        records: [{ seq: 1, ts, payload }],
      });
      // Garbage on the stream is ignored.
      bus.publish({
        type: 'stream.stored',
        hostId: h,
        stream: 'events',
        ackedSeq: 2,
        records: [{ seq: 2, ts, payload: Buffer.from('{not json') }],
      });
      let node = await service.get(owner, h, 'edge');
      for (let i = 0; i < 100 && node.drift.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        node = await service.get(owner, h, 'edge');
      }
      assert.equal(node.drift.length, 1);
      assert.equal(node.drift[0]!.path, path);
      assert.match(node.drift[0]!.diff, /\+# edited/);

      assert.equal((await service.drift(owner, h, 'edge')).drift.length, 1);
      const before = (await service.get(owner, h, 'edge')).currentGeneration!;
      const adopted = await service.resolveDrift(owner, h, 'edge', 'adopt');
      assert.equal(adopted.drift.length, 0);
      assert.equal(adopted.currentGeneration, before + 1);
      const g = await service.generation(owner, h, 'edge', before + 1);
      assert.equal(g.origin, 'host-edit');
      assert.equal(g.outcome, 'applied');
      assert.match(g.files[0]!.content!, /edited on the host/);
      const d = await service.diff(owner, h, 'edge', before, before + 1);
      assert.match(d.parts.find((p) => p.kind === 'file')!.diff, /^\+# edited on the host$/m);
    });

    test('old generations are pruned past the kept number; the one the host runs is kept', async () => {
      const h = hostIds[1]!;
      const small = make(3);
      await small.create(owner, h, { instance: 'pruned', adapter: 'nginx', settings: site('p.test') });
      await small.apply(owner, h, 'pruned');
      agents.refusing.add(h);
      for (let i = 0; i < 4; i++) await assert.rejects(small.apply(owner, h, 'pruned'));
      agents.refusing.delete(h);
      const left = await small.generations(owner, h, 'pruned', { limit: 100 });
      assert.deepEqual(
        left.map((g) => g.generation),
        [5, 4, 3, 1],
        'the newest three and generation 1, which the host still runs',
      );
    });

    test('permissions: a viewer reads but cannot push; a host outside a scoped actor is 404', async () => {
      const viewer = { ...actorOf({ id: 'viewer-1', role: 'viewer' }), ip: null };
      assert.ok((await service.list(viewer)).length >= 4);
      await assert.rejects(
        service.apply(viewer, hostIds[0]!, 'web'),
        (e: unknown) => e instanceof KeelError && e.code === 'auth.forbidden',
      );
      const scoped = {
        ...actorOf({ id: 'op-1', role: 'operator', scoped: true }, [
          { hostId: hostIds[1]!, role: 'operator' },
        ]),
        ip: null,
      };
      await assert.rejects(
        service.get(scoped, hostIds[0]!, 'web'),
        (e: unknown) => e instanceof KeelError && e.code === 'host.not_found',
      );
      assert.deepEqual([...new Set((await service.list(scoped)).map((n) => n.hostId))], [hostIds[1]]);
      await assert.rejects(
        service.startRollout(scoped, { targets: [{ hostId: hostIds[0]!, instance: 'edge' }] }),
        (e: unknown) => e instanceof KeelError && e.code === 'host.not_found',
      );
      assert.ok(
        (await service.rollouts(scoped, 10)).length === 0,
        'rollouts over hosts it cannot see are hidden',
      );
    });
  });
}
