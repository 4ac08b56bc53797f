// Proves the Ansible rollout: ansible/site.yml (role keel_agent) run against two local test hosts
// (connection local, each with its own install prefix) installs the agent from a real controller,
// enrolls both with one multi-use join token and brings them online; a second run and a --check
// run report changed=0. Then staged upgrades on that fleet: when the controller offers a newer
// agent bundle, the playbook upgrades the canary first; a broken bundle is rolled back on the
// canary by install.sh itself and the play stops before the next host, which never gets it.
// (ansible-lint: install-artifacts.test.ts.)
//
// One file, one controller and one fleet for both tests: the upgrades start from the fleet the
// rollout made (a controller start, a test process and two install.sh runs fewer than a file of
// their own). The upgrade test needs the rollout test's fleet and says so when it is missing.
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
import assert from 'node:assert/strict';
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { waitFor } from './helpers/fleet.ts';
import {
  agentVersion,
  ansibleFleet,
  bumpVersion,
  need,
  recap,
  repackAgentBundle,
  useInstallFleet,
  versionRe,
} from './install-helpers.ts';

/** Newer releases made from this tree's bundle: a good one, then a broken one. */
const v1 = bumpVersion(agentVersion, 1);
const v2 = bumpVersion(agentVersion, 2);

describe('ansible rollout and staged upgrade', { skip: need('ansible-playbook') }, () => {
  const fixture = useInstallFleet('keel-ansible-');
  /** The playbook against the two hosts, once the rollout test made it; the fleet it enrolled. */
  let fleet: Awaited<ReturnType<typeof ansibleFleet>> | undefined;
  let rolledOut = false;
  const versions = async () =>
    JSON.stringify(
      Object.fromEntries(
        (
          await fixture.controller.api.get<{
            hosts: { name: string; online: boolean; agentVersion: string }[];
          }>('/hosts')
        ).body.hosts.map((h) => [h.name, `${h.agentVersion}${h.online ? '' : ' (offline)'}`]),
      ),
    );

  test(
    'site.yml enrolls every host; a second run and --check change nothing',
    // Generous: three playbook runs (Python) take a minute quiet, several on a loaded 2-core machine.
    { timeout: 300_000 },
    async () => {
      const token = await fixture.controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      fleet = await ansibleFleet(fixture.work, fixture.controller.url, token.body.secret);

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
      assert.equal(await versions(), JSON.stringify({ 'host-a': agentVersion, 'host-b': agentVersion }));

      const second = await fleet.play();
      assert.equal(second.code, 0, second.out);
      assert.deepEqual(recap(second.out), { 'host-a': 0, 'host-b': 0 }, second.out);

      const check = await fleet.play('--check');
      assert.equal(check.code, 0, check.out);
      assert.deepEqual(recap(check.out), { 'host-a': 0, 'host-b': 0 }, check.out);
      rolledOut = true;
    },
  );

  test(
    'a newer bundle goes canary first; a broken one stops at the canary, rolled back',
    // Generous: two playbook runs (Python) take a minute quiet, several on a loaded 2-core machine.
    { timeout: 300_000 },
    async () => {
      assert.ok(fleet && rolledOut, 'needs the fleet the rollout test enrolled (it failed)');

      repackAgentBundle(fixture.bundles, fixture.work, v1);
      const upgrade = await fleet.play();
      assert.equal(upgrade.code, 0, upgrade.out);
      assert.match(upgrade.out, new RegExp(`Done: keel-agent ${versionRe(v1)} is online`));
      assert.equal(await versions(), JSON.stringify({ 'host-a': v1, 'host-b': v1 }));

      repackAgentBundle(fixture.bundles, fixture.work, v2, 'process.exit(1);\n');
      const broken = await fleet.play('-e', 'keel_wait_seconds=4');
      assert.notEqual(broken.code, 0, broken.out);
      assert.match(broken.out, new RegExp(`rolled back to ${versionRe(v1)}`));
      // The canary unpacked the broken release and went back; the next batch never started.
      assert.ok(existsSync(join(fixture.work, `root-host-a/opt/keel/agent/releases/${v2}`)));
      assert.ok(!existsSync(join(fixture.work, `root-host-b/opt/keel/agent/releases/${v2}`)), broken.out);
      for (const host of ['host-a', 'host-b']) {
        assert.equal(
          readlinkSync(join(fixture.work, `root-${host}`, 'opt/keel/agent/current')),
          `releases/${v1}`,
        );
      }
      await waitFor(
        async () => (await versions()) === JSON.stringify({ 'host-a': v1, 'host-b': v1 }),
        10_000,
        `both hosts online on ${v1}`,
      );
    },
  );
});
