// Proves staged agent upgrades end to end: five hosts installed by install.sh from real release
// bundles refuse a bundle whose SHA-256 differs, stop a broken release at the canary (which
// switches itself back to the old release and comes back online by itself, and the rollout
// halts), then all move to a newer release built from the same sources through a staged rollout
// that carries on across a controller restart which outlasts a host's trial deadline (its launcher
// holds the trial while the controller does not answer, and a request whose answer the restart
// lost is sent again), while a supervised process on every host keeps its pid; restarting the
// agent's service keeps that process too, and uninstalling the agent stops it.
//
// systemd is not PID 1 here: install.sh gets the stand-in systemctl (test/install-stand-in-systemctl.sh),
// which runs the unit's ExecStart — the real keel-agent launcher install.sh writes, whose restart
// on exit 75 and trial watchdog are what this test exercises.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KeelError } from '@keel/shared';
import { ApiClient } from './helpers/api.ts';
import { cachedRelease } from './helpers/release-cache.ts';
import { removeDir, repoRoot, startTestController, tempDir, waitFor } from './helpers/fleet.ts';
import {
  buildAgentBundle,
  repackAgentBundle,
  sh,
  standInSystemctl,
  stopStandInServices,
} from './install-helpers.ts';
import type { Controller } from '../controller/src/server.ts';

const base = (JSON.parse(readFileSync(join(repoRoot, 'agent/package.json'), 'utf8')) as { version: string })
  .version;
const bump = (v: string, n: number) => v.replace(/\d+$/, (p) => String(Number(p) + n));
/** A newer release built from the same sources, and a broken one (crashes at start). */
const next = bump(base, 1);
const broken = bump(base, 2);
const HOSTS = 5;

interface RolloutView {
  id: string;
  state: string;
  reason: string | null;
  hosts: { hostId: string; name: string; state: string; reason: string | null; fromVersion: string | null }[];
}

describe('staged agent upgrades', () => {
  let work: string;
  let bundles: string;
  let controller: Controller & { dataDir: string };
  let api: ApiClient;
  let admin: { username: string; password: string };
  const roots: string[] = [];
  const hostIds: string[] = [];

  const rootEnv = (root: string) => ({
    KEEL_ROOT: root,
    KEEL_SYSTEMCTL: standInSystemctl,
    KEEL_WAIT_SECONDS: '60',
  });

  /**
   * Puts the agent built at `version` from the sources into the bundle directory (what the
   * controller serves: the tarball and its .sha256), built once per change of the sources.
   */
  const build = (version: string) => {
    const release = cachedRelease('agent', { agentVersion: version });
    for (const name of [`keel-agent-${version}.tar.gz`, `keel-agent-${version}.tar.gz.sha256`])
      copyFileSync(join(release, name), join(bundles, name));
  };

  /** Pids of the supervised processes the tests started (they outlive agents by design). */
  const keepers: number[] = [];
  /** The pid of the running `keeper` process on a host, as its agent reports it. */
  const keeperPid = (id: string) =>
    waitFor(
      async () => {
        const res = await api.get<{
          processes: { name: string; status: { state: string; pid: number | null } | null }[];
        }>(`/hosts/${id}/processes`);
        const p = res.body.processes?.find((x) => x.name === 'keeper');
        return p?.status?.state === 'running' ? p.status.pid : null;
      },
      60_000,
      'the keeper process running',
    );
  const hostRow = async (id: string) => (await controller.services.hosts.list()).find((h) => h.id === id)!;
  const currentOf = (root: string) => readlinkSync(join(root, 'opt/keel/agent/current'));

  before(
    async () => {
      work = tempDir('keel-upgrades-');
      // The release exactly as `npm run build` makes it, a newer one built from the same sources
      // (it must report its version), and a broken one: the release repacked under another version
      // with a program that throws at start (it never runs far enough to report one).
      bundles = buildAgentBundle(work);
      build(next);
      repackAgentBundle(bundles, work, broken, "throw new Error('broken on purpose');\n");

      process.env.KEEL_AGENT_BUNDLE_DIR = bundles;
      controller = await startTestController();
      admin = controller.firstAdmin!;
      api = new ApiClient(controller.url);
      await api.login(admin.username, admin.password);

      // Five hosts, each installed with the one-line command on the base release.
      const installs = [];
      for (let i = 0; i < HOSTS; i++) {
        const root = join(work, `root-${i}`);
        roots.push(root);
        const created = await api.post<{ command: string }>('/join-tokens', { note: `host-${i}` });
        assert.equal(created.status, 201);
        installs.push(
          sh(`${created.body.command} --name host-${i} --version ${base}`, rootEnv(root), 150_000),
        );
      }
      for (const r of await Promise.all(installs)) assert.equal(r.code, 0, r.out);
      const hosts = await waitFor(
        async () => {
          const list = await controller.services.hosts.list();
          return list.length === HOSTS && list.every((h) => h.online && h.agentVersion === base)
            ? list
            : null;
        },
        60_000,
        'five hosts online',
      );
      // In name order: host-0 is the canary of a rollout over every host.
      for (const h of hosts.sort((a, b) => a.name.localeCompare(b.name))) hostIds.push(h.id);
    },
    { timeout: 240_000 },
  );

  after(async () => {
    stopStandInServices(work);
    // A keeper's pid is its program's; the process group is the supervisor's wrapper around it.
    for (const pid of keepers) {
      try {
        // Still the keeper's program (not a pid reused by another test's process since)?
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== 'sleep\u00003600\u0000') continue;
        const pgid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await controller?.close();
    delete process.env.KEEL_AGENT_BUNDLE_DIR;
    if (controller) removeDir(controller.dataDir);
    removeDir(work);
  });

  test('a bundle whose SHA-256 differs is refused and nothing is switched', { timeout: 60_000 }, async () => {
    const size = statSync(join(bundles, `keel-agent-${next}.tar.gz`)).size;
    await assert.rejects(
      controller.gateway.request(hostIds[0]!, 'agent.upgrade', {
        version: next,
        sha256: 'a'.repeat(64),
        size,
        confirmSeconds: 30,
        maxStarts: 2,
      }),
      (err: unknown) => err instanceof KeelError && err.code === 'upgrade.checksum_mismatch',
    );
    // A wrong size is caught while downloading, before the hash.
    await assert.rejects(
      controller.gateway.request(hostIds[0]!, 'agent.upgrade', {
        version: next,
        sha256: 'a'.repeat(64),
        size: 1000,
        confirmSeconds: 30,
        maxStarts: 2,
      }),
      (err: unknown) => err instanceof KeelError && err.code === 'upgrade.checksum_mismatch',
    );
    assert.equal(currentOf(roots[0]!), `releases/${base}`);
    assert.ok(!existsSync(join(roots[0]!, `opt/keel/agent/releases/${next}`)));
    assert.ok(!existsSync(join(roots[0]!, 'var/lib/keel-agent/upgrade/trial')));
    assert.ok(controller.gateway.isOnline(hostIds[0]!));
  });

  test(
    'a broken release halts the rollout at the canary, which switches itself back and comes online',
    { timeout: 120_000 },
    async () => {
      const started = await api.post<{ rollout: RolloutView }>('/agent-rollouts', {
        version: broken,
        canary: 1,
        batchSize: 2,
        confirmSeconds: 20,
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const id = started.body.rollout.id;
      assert.deepEqual(
        started.body.rollout.hosts.map((h) => h.hostId),
        hostIds,
      );
      const halted = await waitFor(
        async () => {
          const r = (await api.get<{ rollout: RolloutView }>(`/agent-rollouts/${id}`)).body.rollout;
          return r.state === 'halted' ? r : null;
        },
        90_000,
        'the rollout halted',
      );
      const [canary, ...rest] = halted.hosts;
      assert.equal(canary!.state, 'rolled-back', JSON.stringify(canary));
      assert.match(canary!.reason!, /switched itself back/);
      assert.match(halted.reason!, /host-0/);
      // The rest were never touched.
      for (const h of rest) assert.equal(h.state, 'cancelled');
      for (const root of roots.slice(1)) assert.equal(currentOf(root), `releases/${base}`);
      // The canary is back on the old release, online, by itself; the broken release is gone.
      assert.equal(currentOf(roots[0]!), `releases/${base}`);
      const row = await hostRow(hostIds[0]!);
      assert.equal(row.online, true);
      assert.equal(row.agentVersion, base);
      await waitFor(
        () => !existsSync(join(roots[0]!, `opt/keel/agent/releases/${broken}`)),
        30_000,
        'the broken release removed',
      );
      // The watchdog's account reached the controller as a host event.
      await waitFor(
        async () => {
          const events = await controller.services.hostEvents.tail(hostIds[0]!, 200);
          return JSON.stringify(events).includes('agent.upgrade.rolled-back');
        },
        30_000,
        'the rolled-back event',
      ).catch(() => assert.fail('no agent.upgrade.rolled-back event'));
    },
  );

  test(
    'a good release reaches every host in stages across a controller restart longer than the trial, supervised processes keep their pids',
    { timeout: 300_000 },
    async () => {
      // A supervised process on every host: an upgrade restarts the agent, never them.
      const pids: number[] = [];
      for (const id of hostIds) {
        const res = await api.post<{ process: { name: string } }>(`/hosts/${id}/processes`, {
          name: 'keeper',
          argv: ['sleep', '3600'],
        });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        pids.push(await keeperPid(id));
      }
      keepers.push(...pids);

      const started = await api.post<{ rollout: RolloutView & { maxStarts: number } }>('/agent-rollouts', {
        version: next,
        canary: 1,
        batchSize: 2,
        confirmSeconds: 20,
        maxStarts: 4,
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      assert.equal(started.body.rollout.maxStarts, 4);
      const id = started.body.rollout.id;
      // A second rollout while one runs is refused.
      const second = await api.post<{ error: { code: string } }>('/agent-rollouts', { version: next });
      assert.equal(second.status, 409);
      assert.equal(second.body.error.code, 'upgrade.rollout_active');

      // Never more than one batch away at once: watched while the rollout runs.
      let mostUpgrading = 0;
      const view = async () =>
        (await api.get<{ rollout: RolloutView }>(`/agent-rollouts/${id}`)).body.rollout;
      await waitFor(
        async () => {
          const r = await view();
          mostUpgrading = Math.max(mostUpgrading, r.hosts.filter((h) => h.state === 'upgrading').length);
          return r.hosts[0]!.state === 'ok' ? r : null;
        },
        90_000,
        'the canary upgraded',
      );
      // The controller goes away as soon as a host of the second stage has switched to the new
      // release (its trial runs; the answer to the other host's request may be lost with the
      // controller), and stays away past that trial's deadline: the host's launcher must hold the
      // trial while the controller does not answer, not switch a good release back.
      await waitFor(() => currentOf(roots[1]!) === `releases/${next}`, 90_000, 'host-1 switched');
      const trial = readFileSync(join(roots[1]!, 'var/lib/keel-agent/upgrade/trial'), 'utf8');
      assert.match(trial, /^max_starts=4$/m);
      const { dataDir, port } = { dataDir: controller.dataDir, port: controller.port };
      const deadline = Number(/^deadline=(\d+)$/m.exec(trial)?.[1]);
      assert.ok(deadline > 0, trial);
      await controller.close();
      // Away past the trial's own deadline (the launcher holds the trial from its first probe that
      // finds the controller away, every 5 s).
      await waitFor(
        () =>
          Date.now() / 1000 > deadline + 1 &&
          existsSync(join(roots[1]!, 'var/lib/keel-agent/upgrade/trial-hold')),
        90_000,
        "host-1's launcher holding the trial past its deadline",
      );
      assert.equal(currentOf(roots[1]!), `releases/${next}`);
      // The rollout goes on from its rows.
      controller = await startTestController({ dataDir, port });
      api = new ApiClient(controller.url);
      await api.login(admin.username, admin.password);
      const done = await waitFor(
        async () => {
          const r = await view();
          mostUpgrading = Math.max(mostUpgrading, r.hosts.filter((h) => h.state === 'upgrading').length);
          return r.state === 'done' || r.state === 'halted' ? r : null;
        },
        180_000,
        'the rollout done',
      );
      // (Not inside the wait: waitFor retries what throws, so a halt waited out the whole 180 s.)
      assert.equal(done.state, 'done', `halted: ${done.reason}`);
      assert.ok(mostUpgrading <= 2, `at most one batch at once, saw ${mostUpgrading}`);
      for (const h of done.hosts) assert.equal(h.state, 'ok', JSON.stringify(h));
      for (const [i, id] of hostIds.entries()) {
        const row = await waitFor(
          async () => {
            const r = await hostRow(id);
            return r.online ? r : null;
          },
          30_000,
          `${id} online on the new release`,
        );
        // Online is stored with the version the session announced (not the facts that follow it).
        const back = join(roots[i]!, 'var/lib/keel-agent/upgrade/rolled-back');
        assert.equal(
          row.agentVersion,
          next,
          `host-${i} on ${currentOf(roots[i]!)}${existsSync(back) ? `, rolled back: ${readFileSync(back, 'utf8')}` : ''}`,
        );
      }
      for (const root of roots) {
        assert.equal(currentOf(root), `releases/${next}`);
        // The trial ended; the previous release is kept for a manual step back. The new agent ends
        // its trial once its session is welcomed, beside the controller marking the host ok: the
        // file may go a moment after the rollout was seen done.
        await waitFor(
          () => !existsSync(join(root, 'var/lib/keel-agent/upgrade/trial')),
          15_000,
          `the trial of ${root} ended`,
        );
        assert.ok(existsSync(join(root, `opt/keel/agent/releases/${base}`)));
      }
      // The supervised processes ran through the upgrade: the same pids, adopted by the new agent.
      for (const [i, id] of hostIds.entries()) assert.equal(await keeperPid(id), pids[i], `host-${i}`);
      const overview = await api.get<{ fleet: { version: string; hosts: number }[] }>('/agent-rollouts');
      assert.deepEqual(overview.body.fleet, [{ version: next, hosts: HOSTS, online: HOSTS }]);
      // Audited: the start (by the admin) and the end (by the system; appended after the rollout's
      // state is stored as done, so it may come a moment after the wait above saw it).
      const actions = await waitFor(
        async () => {
          const text = JSON.stringify((await api.get('/audit?limit=200')).body);
          return /rollout\.done/.test(text) ? text : null;
        },
        15_000,
        'rollout.done audited',
      );
      assert.match(actions, /rollout\.start/);
      assert.match(actions, /rollout\.done/);
      assert.match(actions, /rollout\.halt/);
    },
  );

  test(
    "restarting the agent's service keeps supervised processes; uninstalling the agent stops them",
    { timeout: 120_000 },
    async () => {
      assert.equal(keepers.length, HOSTS, 'the rollout test started a keeper on every host');
      // The stand-in systemctl signals the unit's main process alone (the launcher), as systemd does
      // with the unit's KillMode=process (asserted on the unit in test/install-artifacts.test.ts).
      const events = controller.services.hostEvents;
      const before = (await events.tail(hostIds[0]!, 1)).events.at(-1)?.seq ?? 0;
      const adoptions = async () =>
        (await events.read(hostIds[0]!, before, 1000)).events.filter((e) => e.kind === 'process.adopted')
          .length;
      const restarted = spawnSync(standInSystemctl, ['restart', 'keel-agent.service'], {
        env: { ...process.env, ...rootEnv(roots[0]!) },
        encoding: 'utf8',
      });
      assert.equal(restarted.status, 0, restarted.stderr);
      await waitFor(async () => (await adoptions()) > 0, 60_000, "host-0's new agent adopted its process");
      assert.equal(await keeperPid(hostIds[0]!), keepers[0]);
      // Uninstall stops what the agent supervised (checked by pid and start time), else it would run on unmanaged.
      const removed = await sh(`sh ${join(repoRoot, 'install.sh')} uninstall`, rootEnv(roots[4]!));
      assert.equal(removed.code, 0, removed.out);
      assert.match(removed.out, /stopped supervised process keeper/);
      await waitFor(
        () => {
          try {
            process.kill(keepers[4]!, 0);
            return false;
          } catch {
            return true;
          }
        },
        10_000,
        "host-4's keeper gone",
      );
    },
  );
});
