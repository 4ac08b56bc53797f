// Proves the one-line install: the Add host command, run as given, fetches install.sh and the agent
// bundle from a real controller, verifies them, installs into a temporary root (KEEL_ROOT) with
// tight permissions, enrolls, starts the real agent and waits until the controller shows it online;
// a re-run changes nothing; upgrade, rollback of a broken bundle and --version; a wrong pin or
// checksum or an old Node.js installs nothing; uninstall keeps the data unless --purge.
// (The controller mode: install-controller.test.ts; linters and units: install-artifacts.test.ts.)
//
// systemd is not PID 1 on this machine, so the script is given a stand-in systemctl
// (test/install-stand-in-systemctl.sh) that runs a unit's ExecStart with its environment.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot, waitFor } from './helpers/fleet.ts';
import {
  agentVersion as base,
  bumpVersion,
  has,
  repackAgentBundle,
  sh,
  standInSystemctl,
  useInstallFleet,
  versionRe,
} from './install-helpers.ts';

const mode = (path: string) => statSync(path).mode & 0o777;
/** Newer releases made from this tree's bundle: a good one, then a broken one. */
const v1 = bumpVersion(base, 1);
const v2 = bumpVersion(base, 2);

describe('install.sh', () => {
  const fixture = useInstallFleet('keel-install-');

  const repack = (version: string, main?: string) =>
    repackAgentBundle(fixture.bundles, fixture.work, version, main);

  const rootEnv = (root: string) => ({
    KEEL_ROOT: root,
    KEEL_SYSTEMCTL: standInSystemctl,
    KEEL_WAIT_SECONDS: '30',
  });

  test(
    'the Add host command installs, enrolls and brings the host online; a re-run changes nothing',
    { timeout: 110_000 },
    async (t) => {
      const root = join(fixture.work, 'root-a');
      const created = await fixture.controller.api.post<{ command: string }>('/join-tokens', {
        note: 'install test',
      });
      assert.equal(created.status, 201);
      const command = created.body.command;
      assert.match(
        command,
        /^curl -fsSL http:\/\/127\.0\.0\.1:\d+\/install\.sh \| KEEL_JOIN_TOKEN=kjt_\S+ sh -s -- agent /,
      );

      // Exactly the command from the console, in the test root.
      const first = await sh(command, rootEnv(root));
      assert.equal(first.code, 0, first.out);
      assert.match(first.out, /SHA-256 verified/);
      assert.match(first.out, /Done: this host is online/);
      // The figure issue 11 asks for: curl | sh to online (download, Node start, enroll, connect).
      t.diagnostic(/Done: .*/.exec(first.out)?.[0] ?? '');
      assert.ok(!first.out.includes(command.split('KEEL_JOIN_TOKEN=')[1]!.split(' ')[0]!), 'token printed');

      // Files and permissions.
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), `releases/${base}`);
      assert.equal(mode(join(root, 'var/lib/keel-agent')), 0o700);
      assert.equal(mode(join(root, 'etc/keel/agent.env')), 0o600);
      assert.equal(mode(join(root, 'usr/local/bin/keel-agent')), 0o755);
      assert.equal(mode(join(root, 'etc/systemd/system/keel-agent.service')), 0o644);
      assert.ok(statSync(join(root, 'var/lib/keel-agent/enrollment.json')).isFile());
      const unit = readFileSync(join(root, 'etc/systemd/system/keel-agent.service'), 'utf8');
      assert.match(unit, new RegExp(`^ExecStart=${root}/usr/local/bin/keel-agent run$`, 'm'));
      const release = join(root, `opt/keel/agent/releases/${base}`);
      for (const f of ['bin/keel-agent.mjs', 'dist/keel-agent.mjs', 'package.json']) {
        assert.equal(mode(join(release, f)) & 0o022, 0, `${f} is group/world writable`);
      }

      // The controller sees it: online, on the installed version.
      const hosts = await fixture.controller.api.get<{
        hosts: { name: string; online: boolean; agentVersion: string }[];
      }>('/hosts');
      assert.equal(hosts.body.hosts.length, 1);
      assert.equal(hosts.body.hosts[0]!.online, true);
      assert.equal(hosts.body.hosts[0]!.agentVersion, base);
      const pid = readFileSync(join(root, 'run/stand-in/keel-agent.service.pid'), 'utf8');

      // Idempotent: the same command again (its token is used up) keeps everything as it is.
      const again = await sh(command, rootEnv(root));
      assert.equal(again.code, 0, again.out);
      assert.match(again.out, /already enrolled/);
      assert.match(again.out, /already unpacked/);
      assert.match(again.out, /running and nothing changed/);
      assert.match(again.out, /already enrolled/);
      assert.doesNotMatch(again.out, /Making a join token/);
      assert.equal(readFileSync(join(root, 'run/stand-in/keel-agent.service.pid'), 'utf8'), pid);
      assert.equal((await fixture.controller.api.get<{ hosts: unknown[] }>('/hosts')).body.hosts.length, 1);

      // Installed units pass systemd's own checks (their paths exist in the test root).
      if (has('systemd-analyze')) {
        const verify = spawnSync(
          'systemd-analyze',
          ['verify', join(root, 'etc/systemd/system/keel-agent.service')],
          {
            encoding: 'utf8',
          },
        );
        assert.equal(verify.status, 0, verify.stderr);
      }

      // Upgrade to what the controller serves now; a broken bundle is rolled back by the script.
      const hostVersion = async () =>
        (await fixture.controller.api.get<{ hosts: { online: boolean; agentVersion: string }[] }>('/hosts'))
          .body.hosts[0]!;
      repack(v1);
      const upgrade = `curl -fsSL ${fixture.controller.url}/install.sh | sh -s -- upgrade`;
      const up = await sh(upgrade, rootEnv(root));
      assert.equal(up.code, 0, up.out);
      assert.match(up.out, new RegExp(`Done: keel-agent ${versionRe(v1)} is online`));
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), `releases/${v1}`);
      assert.equal((await hostVersion()).agentVersion, v1);
      repack(v2, 'process.exit(1);\n');
      const broken = await sh(upgrade, { ...rootEnv(root), KEEL_WAIT_SECONDS: '4' });
      assert.equal(broken.code, 1, broken.out);
      assert.match(broken.out, new RegExp(`did not come online within 4s; rolled back to ${versionRe(v1)}`));
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), `releases/${v1}`);
      // An agent process start (the rolled-back release): on two busy cores, seconds.
      await waitFor(async () => (await hostVersion()).online, 30_000, `host back online on ${v1}`);
      assert.equal((await hostVersion()).agentVersion, v1);
      // Any version the controller holds can be chosen, an older one included.
      const back = await sh(`${upgrade} --version ${base}`, rootEnv(root));
      assert.equal(back.code, 0, back.out);
      assert.match(back.out, new RegExp(`Done: keel-agent ${versionRe(base)} is online`));
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), `releases/${base}`);
      assert.equal((await hostVersion()).agentVersion, base);
      for (const v of [v1, v2]) {
        for (const f of [`keel-agent-${v}.tar.gz`, `keel-agent-${v}.tar.gz.sha256`])
          rmSync(join(fixture.bundles, f));
      }

      // Uninstall stops it and keeps the key; --purge removes that too.
      const removed = await sh(`sh ${repoRoot}install.sh uninstall`, rootEnv(root));
      assert.equal(removed.code, 0, removed.out);
      assert.match(removed.out, /Kept its key/);
      assert.ok(!existsSync(join(root, 'opt/keel')));
      assert.ok(!existsSync(join(root, 'usr/local/bin/keel-agent')));
      assert.ok(!existsSync(join(root, 'etc/systemd/system/keel-agent.service')));
      assert.ok(existsSync(join(root, 'var/lib/keel-agent/enrollment.json')));
      await waitFor(
        async () =>
          !(await fixture.controller.api.get<{ hosts: { online: boolean }[] }>('/hosts')).body.hosts[0]!
            .online,
        10_000,
        'host offline after uninstall',
      );
      const purged = await sh(`sh ${repoRoot}install.sh uninstall agent --purge`, rootEnv(root));
      assert.equal(purged.code, 0, purged.out);
      assert.ok(!existsSync(join(root, 'var/lib/keel-agent')));
      assert.ok(!existsSync(join(root, 'etc/keel/agent.env')));
    },
  );

  test('a pin that is not the serving controller key installs nothing', { timeout: 30_000 }, async () => {
    const root = join(fixture.work, 'root-b');
    const script = join(fixture.work, 'install.sh');
    const served = await fetch(`${fixture.controller.url}/install.sh`);
    writeFileSync(script, await served.text());
    const r = await sh(`sh ${script} agent --pin sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`, {
      ...rootEnv(root),
      KEEL_JOIN_TOKEN: 'kjt_unused',
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /is not the key of the controller that served this script/);
    assert.ok(!existsSync(join(root, 'opt')));
  });

  test('a bundle whose checksum does not match installs nothing', { timeout: 30_000 }, async () => {
    const root = join(fixture.work, 'root-c');
    const bundle = join(fixture.bundles, `keel-agent-${base}.tar.gz`);
    const r = await sh(`sh ${repoRoot}install.sh agent --bundle ${bundle} --sha256 ${'0'.repeat(64)}`, {
      ...rootEnv(root),
      KEEL_CONTROLLER: fixture.controller.url,
      KEEL_PIN: 'sha256:x',
      KEEL_JOIN_TOKEN: 'kjt_unused',
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /checksum mismatch/);
    assert.ok(!existsSync(join(root, `opt/keel/agent/releases/${base}`)));
    assert.ok(!existsSync(join(root, 'opt/keel/agent/current')));
  });

  test('an old Node.js is refused with a clear message', { timeout: 30_000 }, async () => {
    const fakeNode = join(fixture.work, 'node18');
    writeFileSync(fakeNode, '#!/bin/sh\necho 18.20.4\n', { mode: 0o755 });
    const r = await sh(`sh ${repoRoot}install.sh agent --node ${fakeNode} --no-systemd`, {
      ...rootEnv(join(fixture.work, 'root-d')),
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /Keel needs Node\.js 20\.19 or newer; .* is 18\.20\.4/);
  });
});
