// Proves the Ansible rollout: ansible/site.yml (role keel_agent) run against two local test hosts
// (connection local, each with its own install prefix) installs the agent from a real controller,
// enrolls both with one multi-use join token and brings them online; a second run and a --check
// run report changed=0. (Upgrades: install-upgrade-ansible.test.ts; ansible-lint: install-artifacts.test.ts.)
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
// keel-test: exclusive ansible (scripts/test.mjs runs the Ansible files one at a time)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ansibleFleet, need, recap, useInstallFleet } from './install-helpers.ts';

describe('ansible rollout', { skip: need('ansible-playbook') }, () => {
  const fixture = useInstallFleet('keel-ansible-');

  test(
    'site.yml enrolls every host; a second run and --check change nothing',
    // Generous: two playbook runs (Python) take a minute quiet, several on a loaded 2-core machine.
    { timeout: 300_000 },
    async () => {
      const token = await fixture.controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      const fleet = await ansibleFleet(fixture.work, fixture.controller.url, token.body.secret);

      const first = await fleet.play();
      assert.equal(first.code, 0, first.out);
      // Make the directory, download install.sh, run it: 3 changes on each host.
      assert.deepEqual(recap(first.out), { 'host-a': 3, 'host-b': 3 }, first.out);
      const hosts = await fixture.controller.api.get<{ hosts: { name: string; online: boolean }[] }>(
        '/hosts',
      );
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
