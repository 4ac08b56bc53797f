// Proves staged agent upgrades through Ansible: when the controller offers a newer agent bundle,
// ansible/site.yml upgrades the fleet canary first; a broken bundle is rolled back on the canary
// by install.sh itself and the play stops before the next host, which never gets it.
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
import assert from 'node:assert/strict';
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  removeDir,
  startControllerProcess,
  tempDir,
  waitFor,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';
import {
  ansibleFleet,
  buildAgentBundle,
  need,
  repackAgentBundle,
  sh,
  standInSystemctl,
  stopStandInServices,
} from './install-helpers.ts';

describe('ansible staged upgrade', { skip: need('ansible-playbook') }, () => {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  let controller: ControllerProcess;
  let work: string;
  let bundles: string;

  // Builds the agent bundle and starts a controller: seconds, more on a busy machine.
  before(
    async () => {
      work = tempDir('keel-ansible-up-');
      dirs.push(work);
      bundles = buildAgentBundle(work);
      controller = await startControllerProcess(procs, { env: { KEEL_AGENT_BUNDLE_DIR: bundles } });
      dirs.push(controller.dataDir);
    },
    { timeout: 100_000 },
  );

  after(async () => {
    stopStandInServices(work);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const d of dirs) removeDir(d);
  });

  test(
    'a newer bundle goes canary first; a broken one stops at the canary, rolled back',
    { timeout: 110_000 },
    async () => {
      const token = await controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      const fleet = await ansibleFleet(work, controller.url, token.body.secret);
      const versions = async () =>
        JSON.stringify(
          Object.fromEntries(
            (
              await controller.api.get<{ hosts: { name: string; online: boolean; agentVersion: string }[] }>(
                '/hosts',
              )
            ).body.hosts.map((h) => [h.name, `${h.agentVersion}${h.online ? '' : ' (offline)'}`]),
          ),
        );
      // The fleet starts on 0.1.0, installed by install.sh itself (cheaper than a playbook run).
      for (const host of ['host-a', 'host-b']) {
        const r = await sh(`curl -fsSL ${controller.url}/install.sh | sh -s -- agent --name ${host}`, {
          KEEL_ROOT: join(work, `root-${host}`),
          KEEL_SYSTEMCTL: standInSystemctl,
          KEEL_JOIN_TOKEN: token.body.secret,
          KEEL_WAIT_SECONDS: '30',
        });
        assert.equal(r.code, 0, r.out);
      }

      repackAgentBundle(bundles, work, '0.1.1');
      const upgrade = await fleet.play();
      assert.equal(upgrade.code, 0, upgrade.out);
      assert.match(upgrade.out, /Done: keel-agent 0\.1\.1 is online/);
      assert.equal(await versions(), JSON.stringify({ 'host-a': '0.1.1', 'host-b': '0.1.1' }));

      repackAgentBundle(bundles, work, '0.1.2', 'process.exit(1);\n');
      const broken = await fleet.play('-e', 'keel_wait_seconds=4');
      assert.notEqual(broken.code, 0, broken.out);
      assert.match(broken.out, /rolled back to 0\.1\.1/);
      // The canary unpacked 0.1.2 and went back; the next batch never started.
      assert.ok(existsSync(join(work, 'root-host-a/opt/keel/agent/releases/0.1.2')));
      assert.ok(!existsSync(join(work, 'root-host-b/opt/keel/agent/releases/0.1.2')), broken.out);
      for (const host of ['host-a', 'host-b']) {
        assert.equal(readlinkSync(join(work, `root-${host}`, 'opt/keel/agent/current')), 'releases/0.1.1');
      }
      await waitFor(
        async () => (await versions()) === JSON.stringify({ 'host-a': '0.1.1', 'host-b': '0.1.1' }),
        10_000,
        'both hosts online on 0.1.1',
      );
    },
  );
});
