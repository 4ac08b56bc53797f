// Proves the one-line install: the Add host command, run as given, fetches install.sh and the agent
// bundle from a real controller, verifies them, installs into a temporary root (KEEL_ROOT) with
// tight permissions, enrolls, starts the real agent and waits until the controller shows it online;
// a re-run changes nothing, a wrong pin or checksum installs nothing, uninstall keeps the data
// unless --purge. Also: install.sh is shellcheck clean and the installed units pass systemd-analyze.
//
// systemd is not PID 1 on this machine, so the script is given a stand-in systemctl (named
// as such below) that runs a unit's ExecStart with its environment, as systemd would.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiClient, firstAdminFrom } from './helpers/api.ts';
import { repackAgentBundle, standInSystemctl } from './install-helpers.ts';
import {
  freePort,
  removeDir,
  repoRoot,
  startControllerProcess,
  tempDir,
  waitFor,
  type ControllerProcess,
  type Proc,
} from './helpers/fleet.ts';

const has = (program: string) => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
/** CI installs the linters (.ci/run); elsewhere a missing one skips its test rather than failing. */
const need = (program: string) => (has(program) || process.env.CI ? false : `${program} is not installed`);

/** Runs a shell command line with the test root's environment; resolves with its code and output. */
function sh(
  line: string,
  env: Record<string, string>,
  timeoutMs = 90_000,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', line], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('install.sh', () => {
  const procs: Proc[] = [];
  const dirs: string[] = [];
  let controller: ControllerProcess;
  let work: string;
  let bundles: string;

  // Builds the agent bundle and starts a controller: seconds, more on a busy machine.
  before(
    async () => {
      work = tempDir('keel-install-');
      dirs.push(work);
      bundles = join(work, 'bundles');
      // The agent bundle exactly as `npm run build` makes it, served by the controller.
      const built = spawnSync(
        process.execPath,
        [join(repoRoot, 'scripts/build-release.mjs'), 'agent', '--out', bundles],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(built.status, 0, built.stderr);
      controller = await startControllerProcess(procs, { env: { KEEL_AGENT_BUNDLE_DIR: bundles } });
      dirs.push(controller.dataDir);
    },
    { timeout: 150_000 },
  );

  after(async () => {
    // Any agent a failed test left running under the stand-in.
    spawnSync('sh', [
      '-c',
      `for f in ${work}/root*/run/stand-in/*.pid; do [ -f "$f" ] && kill "$(cat "$f")"; done; true`,
    ]);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const d of dirs) removeDir(d);
  });

  const repack = (version: string, main?: string) => repackAgentBundle(bundles, work, version, main);

  const rootEnv = (root: string) => ({
    KEEL_ROOT: root,
    KEEL_SYSTEMCTL: standInSystemctl,
    KEEL_WAIT_SECONDS: '30',
  });

  test(
    'the Add host command installs, enrolls and brings the host online; a re-run changes nothing',
    { timeout: 180_000 },
    async (t) => {
      const root = join(work, 'root-a');
      const created = await controller.api.post<{ command: string }>('/join-tokens', {
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
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), 'releases/0.1.0');
      assert.equal(mode(join(root, 'var/lib/keel-agent')), 0o700);
      assert.equal(mode(join(root, 'etc/keel/agent.env')), 0o600);
      assert.equal(mode(join(root, 'usr/local/bin/keel-agent')), 0o755);
      assert.equal(mode(join(root, 'etc/systemd/system/keel-agent.service')), 0o644);
      assert.ok(statSync(join(root, 'var/lib/keel-agent/enrollment.json')).isFile());
      const unit = readFileSync(join(root, 'etc/systemd/system/keel-agent.service'), 'utf8');
      assert.match(unit, new RegExp(`^ExecStart=${root}/usr/local/bin/keel-agent run$`, 'm'));
      const release = join(root, 'opt/keel/agent/releases/0.1.0');
      for (const f of ['bin/keel-agent.mjs', 'dist/keel-agent.mjs', 'package.json']) {
        assert.equal(mode(join(release, f)) & 0o022, 0, `${f} is group/world writable`);
      }

      // The controller sees it: online, on the installed version.
      const hosts = await controller.api.get<{
        hosts: { name: string; online: boolean; agentVersion: string }[];
      }>('/hosts');
      assert.equal(hosts.body.hosts.length, 1);
      assert.equal(hosts.body.hosts[0]!.online, true);
      assert.equal(hosts.body.hosts[0]!.agentVersion, '0.1.0');
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
      assert.equal((await controller.api.get<{ hosts: unknown[] }>('/hosts')).body.hosts.length, 1);

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
        (await controller.api.get<{ hosts: { online: boolean; agentVersion: string }[] }>('/hosts')).body
          .hosts[0]!;
      repack('0.1.1');
      const upgrade = `curl -fsSL ${controller.url}/install.sh | sh -s -- upgrade`;
      const up = await sh(upgrade, rootEnv(root));
      assert.equal(up.code, 0, up.out);
      assert.match(up.out, /Done: keel-agent 0\.1\.1 is online/);
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), 'releases/0.1.1');
      assert.equal((await hostVersion()).agentVersion, '0.1.1');
      repack('0.1.2', 'process.exit(1);\n');
      const broken = await sh(upgrade, { ...rootEnv(root), KEEL_WAIT_SECONDS: '4' });
      assert.equal(broken.code, 1, broken.out);
      assert.match(broken.out, /did not come online within 4s; rolled back to 0\.1\.1/);
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), 'releases/0.1.1');
      await waitFor(async () => (await hostVersion()).online, 10_000, 'host back online on 0.1.1');
      assert.equal((await hostVersion()).agentVersion, '0.1.1');
      // Any version the controller holds can be chosen, an older one included.
      const back = await sh(`${upgrade} --version 0.1.0`, rootEnv(root));
      assert.equal(back.code, 0, back.out);
      assert.match(back.out, /Done: keel-agent 0\.1\.0 is online/);
      assert.equal(readlinkSync(join(root, 'opt/keel/agent/current')), 'releases/0.1.0');
      assert.equal((await hostVersion()).agentVersion, '0.1.0');
      for (const v of ['0.1.1', '0.1.2']) {
        for (const f of [`keel-agent-${v}.tar.gz`, `keel-agent-${v}.tar.gz.sha256`]) rmSync(join(bundles, f));
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
          !(await controller.api.get<{ hosts: { online: boolean }[] }>('/hosts')).body.hosts[0]!.online,
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
    const root = join(work, 'root-b');
    const script = join(work, 'install.sh');
    const served = await fetch(`${controller.url}/install.sh`);
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
    const root = join(work, 'root-c');
    const bundle = join(bundles, 'keel-agent-0.1.0.tar.gz');
    const r = await sh(`sh ${repoRoot}install.sh agent --bundle ${bundle} --sha256 ${'0'.repeat(64)}`, {
      ...rootEnv(root),
      KEEL_CONTROLLER: controller.url,
      KEEL_PIN: 'sha256:x',
      KEEL_JOIN_TOKEN: 'kjt_unused',
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /checksum mismatch/);
    assert.ok(!existsSync(join(root, 'opt/keel/agent/releases/0.1.0')));
    assert.ok(!existsSync(join(root, 'opt/keel/agent/current')));
  });

  test('an old Node.js is refused with a clear message', { timeout: 30_000 }, async () => {
    const fakeNode = join(work, 'node18');
    writeFileSync(fakeNode, '#!/bin/sh\necho 18.20.4\n', { mode: 0o755 });
    const r = await sh(`sh ${repoRoot}install.sh agent --node ${fakeNode} --no-systemd`, {
      ...rootEnv(join(work, 'root-d')),
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /Keel needs Node\.js 20\.19 or newer; .* is 18\.20\.4/);
  });

  test('install.sh is shellcheck clean', { timeout: 60_000, skip: need('shellcheck') }, () => {
    const r = spawnSync('shellcheck', ['--shell=sh', join(repoRoot, 'install.sh')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});

describe('release bundles', () => {
  test(
    'the agent bundle is reproducible, self-contained and runs outside the repository',
    { timeout: 90_000 },
    () => {
      const work = tempDir('keel-release-');
      try {
        const sums = ['a', 'b'].map((name) => {
          const out = join(work, name);
          const r = spawnSync(
            process.execPath,
            [join(repoRoot, 'scripts/build-release.mjs'), 'agent', '--out', out],
            {
              encoding: 'utf8',
            },
          );
          assert.equal(r.status, 0, r.stderr);
          const line = readFileSync(join(out, 'keel-agent-0.1.0.tar.gz.sha256'), 'utf8');
          assert.equal(readFileSync(join(out, 'SHA256SUMS'), 'utf8'), line);
          return line;
        });
        assert.equal(sums[0], sums[1], 'two builds of the same tree differ');
        const listing = spawnSync('tar', ['-tzf', join(work, 'a/keel-agent-0.1.0.tar.gz')], {
          encoding: 'utf8',
        });
        assert.deepEqual(
          listing.stdout
            .trim()
            .split('\n')
            .filter((f) => !f.endsWith('/'))
            .sort(),
          [
            'keel-agent-0.1.0/bin/keel-agent.mjs',
            'keel-agent-0.1.0/dist/keel-agent.mjs',
            'keel-agent-0.1.0/package.json',
            'keel-agent-0.1.0/systemd/keel-agent.service',
          ],
        );
        // Unpacked where no node_modules can be found: every dependency is inside the bundle.
        spawnSync('tar', ['-xzf', join(work, 'a/keel-agent-0.1.0.tar.gz'), '-C', work]);
        const agent = join(work, 'keel-agent-0.1.0/bin/keel-agent.mjs');
        const version = spawnSync(process.execPath, [agent, 'version'], { encoding: 'utf8' });
        assert.equal(version.stdout.trim(), '0.1.0', version.stderr);
        const identity = spawnSync(
          process.execPath,
          [agent, 'identity', '--state-dir', join(work, 'state')],
          {
            encoding: 'utf8',
          },
        );
        assert.match(identity.stdout, /^fingerprint: sha256:/m, identity.stderr);
      } finally {
        removeDir(work);
      }
    },
  );
});

describe('install.sh controller', () => {
  const built = existsSync(join(repoRoot, 'web/build/index.html'));
  const dirs: string[] = [];
  let work = '';
  after(() => {
    if (work) {
      spawnSync('sh', [
        '-c',
        `for f in ${work}/root*/run/stand-in/*.pid; do [ -f "$f" ] && kill "$(cat "$f")"; done; true`,
      ]);
    }
    for (const d of dirs) removeDir(d);
  });

  test(
    'installs the controller bundle with its own agent; it runs and serves the agent install to a new host',
    // npm test builds the console first; a lone run without it has no controller bundle to make.
    {
      timeout: 240_000,
      skip: built || process.env.CI ? false : 'the console is not built (npm run build -w web)',
    },
    async () => {
      work = tempDir('keel-install-ctl-');
      dirs.push(work);
      const out = join(work, 'bundles');
      const build = spawnSync(
        process.execPath,
        [join(repoRoot, 'scripts/build-release.mjs'), 'controller', '--out', out],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(build.status, 0, build.stderr);
      const bundle = join(out, `keel-controller-0.1.0-linux-${process.arch}.tar.gz`);
      const root = join(work, 'root-ctl');
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const env = { KEEL_ROOT: root, KEEL_SYSTEMCTL: standInSystemctl, KEEL_WAIT_SECONDS: '90' };
      const installLine = `sh ${repoRoot}install.sh controller --bundle ${bundle} --public-url ${url} --port ${port} --with-agent`;

      const first = await sh(installLine, env, 150_000);
      assert.equal(first.code, 0, first.out);
      assert.match(first.out, /SHA-256 verified/);
      assert.match(first.out, /keel-controller 0\.1\.0 is running/);
      // --with-agent: this host's agent, from the bundle the controller carries, enrolled with a
      // token from keel-controller join-token, online.
      assert.match(first.out, /Making a join token for this host's agent/);
      assert.match(first.out, /Done: this host is online/);
      assert.ok(existsSync(join(root, 'var/lib/keel-agent/enrollment.json')));
      assert.equal(readlinkSync(join(root, 'opt/keel/controller/current')), 'releases/0.1.0');
      assert.equal(mode(join(root, 'var/lib/keel-controller')), 0o700);
      assert.equal(mode(join(root, 'etc/keel/controller.env')), 0o640);
      const config = readFileSync(join(root, 'etc/keel/controller.env'), 'utf8');
      assert.match(config, new RegExp(`^KEEL_PUBLIC_URL=${url}$`, 'm'));
      assert.match(config, new RegExp(`^KEEL_DATA_DIR=${root}/var/lib/keel-controller$`, 'm'));
      assert.ok(existsSync(join(root, 'var/lib/keel-controller/controller.key')));
      if (has('systemd-analyze')) {
        const unit = join(root, 'etc/systemd/system/keel-controller.service');
        const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
        assert.equal(verify.status, 0, verify.stderr);
      }

      // The installed controller serves the agent bundle it was built with: a new host installs
      // from it alone.
      const log = readFileSync(join(root, 'run/stand-in/keel-controller.service.log'), 'utf8');
      const admin = firstAdminFrom(log);
      assert.ok(admin, log);
      const api = new ApiClient(url);
      await api.login(admin.username, admin.password);
      const created = await api.post<{ command: string }>('/join-tokens', {
        note: 'from installed controller',
      });
      const agent = await sh(created.body.command, { ...env, KEEL_ROOT: join(work, 'root-host') });
      assert.equal(agent.code, 0, agent.out);
      assert.match(agent.out, /Done: this host is online/);
      const hosts = await api.get<{ hosts: { online: boolean }[] }>('/hosts');
      assert.deepEqual(
        hosts.body.hosts.map((h) => h.online),
        [true, true],
      );

      // Idempotent re-run; uninstall keeps the data.
      const again = await sh(installLine, env, 150_000);
      assert.equal(again.code, 0, again.out);
      assert.match(again.out, /keeping .*controller\.env/);
      assert.match(again.out, /running and nothing changed/);
      assert.match(again.out, /already enrolled/);
      assert.doesNotMatch(again.out, /Making a join token/);
      await sh(`sh ${repoRoot}install.sh uninstall agent`, { ...env, KEEL_ROOT: join(work, 'root-host') });
      await sh(`sh ${repoRoot}install.sh uninstall agent`, env);
      const removed = await sh(`sh ${repoRoot}install.sh uninstall controller`, env);
      assert.equal(removed.code, 0, removed.out);
      assert.ok(!existsSync(join(root, 'opt/keel')));
      assert.ok(existsSync(join(root, 'var/lib/keel-controller/controller.key')));
      assert.ok(existsSync(join(root, 'etc/keel/controller.env')));
    },
  );
});

describe('systemd units', () => {
  const units = ['keel-agent.service', 'keel-controller.service'];
  const read = (unit: string) => readFileSync(join(repoRoot, 'systemd', unit), 'utf8');
  /** key -> values of a unit's [Service] section. */
  const service = (text: string) => {
    const section = /\[Service\]\n([\s\S]*?)(?:\n\[|$)/.exec(text)?.[1] ?? '';
    const map = new Map<string, string[]>();
    for (const line of section.split('\n')) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(line);
      if (m) map.set(m[1]!, [...(map.get(m[1]!) ?? []), m[2]!]);
    }
    return map;
  };

  test('each unit has its sections, an absolute ExecStart, an env file and a state directory', () => {
    for (const unit of units) {
      const text = read(unit);
      for (const s of ['[Unit]', '[Service]', '[Install]'])
        assert.ok(text.includes(`\n${s}\n`), `${unit}: ${s}`);
      const svc = service(text);
      assert.match(svc.get('ExecStart')?.[0] ?? '', /^\/usr\/local\/bin\/keel-(agent run|controller serve)$/);
      assert.match(svc.get('EnvironmentFile')?.[0] ?? '', /^-\/etc\/keel\/(agent|controller)\.env$/);
      assert.equal(svc.get('StateDirectoryMode')?.[0], '0700', unit);
      assert.equal(svc.get('UMask')?.[0], '0077', unit);
      assert.equal(svc.get('LimitCORE')?.[0], '0', unit);
    }
    const controller = service(read('keel-controller.service'));
    assert.equal(controller.get('User')?.[0], 'keel');
    for (const [key, value] of [
      ['ProtectSystem', 'strict'],
      ['NoNewPrivileges', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['PrivateTmp', 'yes'],
      ['ProtectHome', 'yes'],
    ]) {
      assert.equal(controller.get(key!)?.[0], value, `controller ${key}`);
    }
    assert.equal(service(read('keel-agent.service')).get('RestartPreventExitStatus')?.[0], '2');
  });

  test(
    'systemd-analyze verifies both units and rates the controller OK',
    { skip: need('systemd-analyze') },
    () => {
      const dir = tempDir('keel-units-');
      try {
        for (const unit of units) {
          // verify checks that ExecStart exists: point it at a program that does.
          const text = read(unit).replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`);
          writeFileSync(join(dir, unit), text);
          const r = spawnSync('systemd-analyze', ['verify', join(dir, unit)], { encoding: 'utf8' });
          assert.equal(r.status, 0, `${unit}: ${r.stdout}${r.stderr}`);
        }
        const security = spawnSync(
          'systemd-analyze',
          ['security', '--offline=true', '--no-pager', join(dir, 'keel-controller.service')],
          { encoding: 'utf8' },
        );
        const score = Number(
          /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout + security.stderr)?.[1],
        );
        assert.ok(score <= 2, `controller exposure ${score} (docs/operations.md says 1.6)`);
      } finally {
        removeDir(dir);
      }
    },
  );
});
