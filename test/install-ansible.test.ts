// Proves the Ansible rollout: ansible/site.yml (role keel_agent) run against two local test hosts
// (connection local, each with its own install prefix) installs the agent from a real controller,
// enrolls both with one multi-use join token and brings them online; a second run and a --check
// run report changed=0. (Upgrades: install-upgrade-ansible.test.ts; ansible-lint: install-artifacts.test.ts.)
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  removeDir,
  startControllerProcess,
  tempDir,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';
import { ansibleFleet, buildAgentBundle, need, recap, stopStandInServices } from './install-helpers.ts';

describe('ansible rollout', { skip: need('ansible-playbook') }, () => {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  let controller: ControllerProcess;
  let work: string;

  // Builds the agent bundle and starts a controller: seconds, more on a busy machine.
  before(
    async () => {
      work = tempDir('keel-ansible-');
      dirs.push(work);
      const bundles = buildAgentBundle(work);
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
    'site.yml enrolls every host; a second run and --check change nothing',
    { timeout: 110_000 },
    async () => {
      const token = await controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      const fleet = await ansibleFleet(work, controller.url, token.body.secret);

      const first = await fleet.play();
      assert.equal(first.code, 0, first.out);
      // Make the directory, download install.sh, run it: 3 changes on each host.
      assert.deepEqual(recap(first.out), { 'host-a': 3, 'host-b': 3 }, first.out);
      const hosts = await controller.api.get<{ hosts: { name: string; online: boolean }[] }>('/hosts');
      assert.deepEqual(hosts.body.hosts.map((h) => [h.name, h.online]).sort(), [
        ['host-a', true],
        ['host-b', true],
      ]);

      const second = await fleet.play();
      assert.equal(second.code, 0, second.out);
      assert.deepEqual(recap(second.out), { 'host-a': 0, 'host-b': 0 }, second.out);

      const check = await fleet.play('--check');
      assert.equal(check.code, 0, check.out);
      assert.deepEqual(recap(check.out), { 'host-a': 0, 'host-b': 0 }, check.out);
    },
  );
});
