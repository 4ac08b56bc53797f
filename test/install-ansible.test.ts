// Proves the Ansible rollout: ansible/site.yml (role keel_agent) run against two local test hosts
// (connection local, each with its own install prefix) installs the agent from a real controller,
// enrolls both with one multi-use join token and brings them online; a second run and a --check
// run report changed=0; a newer bundle on the controller is rolled out canary first, and a broken
// one is rolled back on the canary by itself and stops the rollout before the next host.
// Also: the role and playbook are ansible-lint clean.
//
// systemd is not PID 1 on this machine: the hosts get the stand-in systemctl that
// test/install.test.ts uses (test/install-stand-in-systemctl.sh).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  removeDir,
  repoRoot,
  startControllerProcess,
  tempDir,
  waitFor,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';
import { repackAgentBundle, run, standInSystemctl } from './install-helpers.ts';

const has = (program: string) => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
/** CI installs Ansible (.ci/run); elsewhere a missing tool skips its test rather than failing. */
const need = (program: string) => (has(program) || process.env.CI ? false : `${program} is not installed`);

/** changed=N of each host in the PLAY RECAP. */
function recap(out: string): Record<string, number> {
  const hosts: Record<string, number> = {};
  for (const m of out.matchAll(/^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0/gm)) {
    hosts[m[1]!] = Number(m[2]);
  }
  return hosts;
}

describe('ansible rollout', { skip: need('ansible-playbook') }, () => {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  let controller: ControllerProcess;
  let work: string;
  let bundles: string;

  // Builds the agent bundle and starts a controller: seconds, more on a busy machine.
  before(
    async () => {
      work = tempDir('keel-ansible-');
      dirs.push(work);
      bundles = join(work, 'bundles');
      const built = spawnSync(
        process.execPath,
        [join(repoRoot, 'scripts/build-release.mjs'), 'agent', '--out', bundles],
        { encoding: 'utf8' },
      );
      assert.equal(built.status, 0, built.stderr);
      controller = await startControllerProcess(procs, { env: { KEEL_AGENT_BUNDLE_DIR: bundles } });
      dirs.push(controller.dataDir);
    },
    { timeout: 150_000 },
  );

  after(async () => {
    spawnSync('sh', [
      '-c',
      `for f in ${work}/root-*/run/stand-in/*.pid; do [ -f "$f" ] && kill "$(cat "$f")"; done; true`,
    ]);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const d of dirs) removeDir(d);
  });

  test(
    'site.yml enrolls every host, changes nothing on a second run or --check, upgrades canary first, halts on a broken bundle, holds a chosen version',
    { timeout: 300_000 },
    async () => {
      const token = await controller.api.post<{ secret: string }>('/join-tokens', {
        uses: 2,
        note: 'ansible',
      });
      assert.equal(token.status, 201);
      const pin = /^KEEL_SERVED_PIN='([^']+)'$/m.exec(
        await (await fetch(`${controller.url}/install.sh`)).text(),
      )![1]!;
      const hostVars = (name: string) =>
        `      ${name}:\n        keel_root: ${join(work, `root-${name}`)}\n` +
        `        keel_systemctl: ${standInSystemctl}\n`;
      const inventory = join(work, 'inventory.yml');
      writeFileSync(
        inventory,
        `keel_agents:\n  hosts:\n${hostVars('host-a')}${hostVars('host-b')}  vars:\n` +
          `    ansible_connection: local\n    ansible_python_interpreter: /usr/bin/python3\n` +
          `    keel_controller_url: ${controller.url}\n    keel_controller_pin: "${pin}"\n` +
          `    keel_wait_seconds: 30\n`,
      );
      const env = {
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
        ANSIBLE_REMOTE_TEMP: join(work, 'ansible-tmp'),
        ANSIBLE_RETRY_FILES_ENABLED: '0',
        ANSIBLE_GATHERING: 'explicit',
      };
      const playbook = ['ansible-playbook', '-i', inventory, 'ansible/site.yml'];
      // The token as extra vars from a file (0600), as a vault would hand it over: not on argv.
      const secrets = join(work, 'secrets.yml');
      writeFileSync(secrets, `keel_join_token: ${token.body.secret}\n`, { mode: 0o600 });

      const first = await run([...playbook, '-e', `@${secrets}`], env);
      assert.equal(first.code, 0, first.out);
      // Make the directory, download install.sh, run it: 3 changes on each host.
      assert.deepEqual(recap(first.out), { 'host-a': 3, 'host-b': 3 }, first.out);
      const hosts = await controller.api.get<{ hosts: { name: string; online: boolean }[] }>('/hosts');
      assert.deepEqual(hosts.body.hosts.map((h) => [h.name, h.online]).sort(), [
        ['host-a', true],
        ['host-b', true],
      ]);

      const second = await run([...playbook, '-e', `@${secrets}`], env);
      assert.equal(second.code, 0, second.out);
      assert.deepEqual(recap(second.out), { 'host-a': 0, 'host-b': 0 }, second.out);

      const check = await run([...playbook, '--check'], env);
      assert.equal(check.code, 0, check.out);
      assert.deepEqual(recap(check.out), { 'host-a': 0, 'host-b': 0 }, check.out);

      // The controller serves a newer bundle: the same playbook upgrades the fleet, canary first.
      const versions = async () =>
        Object.fromEntries(
          (
            await controller.api.get<{ hosts: { name: string; online: boolean; agentVersion: string }[] }>(
              '/hosts',
            )
          ).body.hosts.map((h) => [h.name, `${h.agentVersion}${h.online ? '' : ' (offline)'}`]),
        );
      repackAgentBundle(bundles, work, '0.1.1');
      const upgrade = await run(playbook, env);
      assert.equal(upgrade.code, 0, upgrade.out);
      assert.match(upgrade.out, /Done: keel-agent 0\.1\.1 is online/);
      assert.deepEqual(await versions(), { 'host-a': '0.1.1', 'host-b': '0.1.1' });

      // A broken bundle: the canary rolls itself back, the play stops, the second host is untouched.
      repackAgentBundle(bundles, work, '0.1.2', 'process.exit(1);\n');
      const broken = await run([...playbook, '-e', 'keel_wait_seconds=4'], env);
      assert.notEqual(broken.code, 0, broken.out);
      assert.match(broken.out, /rolled back to 0\.1\.1/);
      // The canary unpacked 0.1.2 and went back; the next batch never started.
      assert.ok(existsSync(join(work, 'root-host-a/opt/keel/agent/releases/0.1.2')));
      assert.ok(!existsSync(join(work, 'root-host-b/opt/keel/agent/releases/0.1.2')), broken.out);
      for (const host of ['host-a', 'host-b']) {
        assert.equal(readlinkSync(join(work, `root-${host}`, 'opt/keel/agent/current')), 'releases/0.1.1');
      }
      await waitFor(
        async () =>
          JSON.stringify(await versions()) === JSON.stringify({ 'host-a': '0.1.1', 'host-b': '0.1.1' }),
        10_000,
        'both hosts online on 0.1.1',
      );

      // A fleet held at a version the controller holds (back to 0.1.0); held, a run changes nothing.
      const pinned = [...playbook, '-e', 'keel_agent_version=0.1.0'];
      const back = await run(pinned, env);
      assert.equal(back.code, 0, back.out);
      await waitFor(
        async () =>
          JSON.stringify(await versions()) === JSON.stringify({ 'host-a': '0.1.0', 'host-b': '0.1.0' }),
        10_000,
        'both hosts online on 0.1.0',
      );
      const held = await run(pinned, env);
      assert.equal(held.code, 0, held.out);
      assert.deepEqual(recap(held.out), { 'host-a': 0, 'host-b': 0 }, held.out);
    },
  );

  test(
    'the role and playbook are ansible-lint clean',
    { timeout: 120_000, skip: need('ansible-lint') },
    async () => {
      const r = await run(['ansible-lint', '--nocolor', 'ansible/'], {
        ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
      });
      assert.equal(r.code, 0, r.out);
    },
  );
});
