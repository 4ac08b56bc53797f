// Proves staged agent upgrades through Ansible: when the controller offers a newer agent bundle,
// ansible/site.yml upgrades the fleet canary first; a broken bundle is rolled back on the canary
// by install.sh itself and the play stops before the next host, which never gets it.
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
// keel-test: exclusive ansible (scripts/test.mjs runs the Ansible files one at a time)
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
  repackAgentBundle,
  sh,
  standInSystemctl,
  useInstallFleet,
  versionRe,
} from './install-helpers.ts';

/** Newer releases made from this tree's bundle: a good one, then a broken one. */
const v1 = bumpVersion(agentVersion, 1);
const v2 = bumpVersion(agentVersion, 2);

describe('ansible staged upgrade', { skip: need('ansible-playbook') }, () => {
  const fixture = useInstallFleet('keel-ansible-up-');

  test(
    'a newer bundle goes canary first; a broken one stops at the canary, rolled back',
    // Generous: two playbook runs (Python) take a minute quiet, several on a loaded 2-core machine.
    { timeout: 300_000 },
    async () => {
      const token = await fixture.controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      const fleet = await ansibleFleet(fixture.work, fixture.controller.url, token.body.secret);
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
      // The fleet starts on this tree's release, installed by install.sh itself (cheaper than a playbook run).
      for (const host of ['host-a', 'host-b']) {
        const r = await sh(
          `curl -fsSL ${fixture.controller.url}/install.sh | sh -s -- agent --name ${host}`,
          {
            KEEL_ROOT: join(fixture.work, `root-${host}`),
            KEEL_SYSTEMCTL: standInSystemctl,
            KEEL_JOIN_TOKEN: token.body.secret,
            KEEL_WAIT_SECONDS: '30',
          },
        );
        assert.equal(r.code, 0, r.out);
      }

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
