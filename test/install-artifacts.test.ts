// Proves the release artifacts and deployment files: the agent bundle is reproducible and
// self-contained; install.sh and the stand-in systemctl are shellcheck clean; the systemd units
// have their hardening (the agent's KillMode=process: its supervised processes survive a restart)
// and pass systemd-analyze; the Ansible role and playbook are ansible-lint
// clean.
// keel-test: own process (it builds releases with spawnSync for seconds; see scripts/test.mjs's batches)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { removeDir, repoRoot, tempDir } from './helpers/fleet.ts';
import { agentVersion, need, run } from './install-helpers.ts';

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
          const line = readFileSync(join(out, `keel-agent-${agentVersion}.tar.gz.sha256`), 'utf8');
          assert.equal(readFileSync(join(out, 'SHA256SUMS'), 'utf8'), line);
          return line;
        });
        assert.equal(sums[0], sums[1], 'two builds of the same tree differ');
        const listing = spawnSync('tar', ['-tzf', join(work, `a/keel-agent-${agentVersion}.tar.gz`)], {
          encoding: 'utf8',
        });
        assert.deepEqual(
          listing.stdout
            .trim()
            .split('\n')
            .filter((f) => !f.endsWith('/'))
            .sort(),
          [
            `keel-agent-${agentVersion}/bin/keel-agent.mjs`,
            `keel-agent-${agentVersion}/dist/keel-agent-lazy.cjs`,
            `keel-agent-${agentVersion}/dist/keel-agent.mjs`,
            `keel-agent-${agentVersion}/package.json`,
            `keel-agent-${agentVersion}/systemd/keel-agent.service`,
          ],
        );
        // Unpacked where no node_modules can be found: every dependency is inside the bundle.
        spawnSync('tar', ['-xzf', join(work, `a/keel-agent-${agentVersion}.tar.gz`), '-C', work]);
        const agent = join(work, `keel-agent-${agentVersion}/bin/keel-agent.mjs`);
        const version = spawnSync(process.execPath, [agent, 'version'], { encoding: 'utf8' });
        assert.equal(version.stdout.trim(), agentVersion, version.stderr);
        const identity = spawnSync(
          process.execPath,
          [agent, 'identity', '--state-dir', join(work, 'state')],
          {
            encoding: 'utf8',
          },
        );
        assert.match(identity.stdout, /^fingerprint: sha256:/m, identity.stderr);
        // What an idle agent never runs (execa, the configs engine's packages) is in the lazy file
        // beside the bundle, loaded on first use: it works without node_modules too.
        const lazy = spawnSync(
          process.execPath,
          [
            '-e',
            "const m = require(process.argv[1]); process.stdout.write(m.execa.execaSync('echo', ['ok']).stdout + ' ' + typeof m.chokidar.watch + ' ' + typeof m.diff.createTwoFilesPatch + ' ' + typeof m['smol-toml'].parse)",
            join(work, `keel-agent-${agentVersion}/dist/keel-agent-lazy.cjs`),
          ],
          { encoding: 'utf8', cwd: work },
        );
        assert.equal(lazy.stdout, 'ok function function function', lazy.stderr);
      } finally {
        removeDir(work);
      }
    },
  );
});

describe('linters', () => {
  test(
    'install.sh and the stand-in systemctl are shellcheck clean',
    { timeout: 60_000, skip: need('shellcheck') },
    () => {
      const r = spawnSync(
        'shellcheck',
        ['--shell=sh', join(repoRoot, 'install.sh'), join(repoRoot, 'test/install-stand-in-systemctl.sh')],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
    },
  );

  test(
    'the Ansible role and playbook are ansible-lint clean',
    { timeout: 120_000, skip: need('ansible-lint') },
    async () => {
      const work = tempDir('keel-lint-');
      try {
        const r = await run(['ansible-lint', '--nocolor', 'ansible/'], {
          ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
        });
        assert.equal(r.code, 0, r.out);
      } finally {
        removeDir(work);
      }
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
    const agent = service(read('keel-agent.service'));
    assert.equal(agent.get('RestartPreventExitStatus')?.[0], '2');
    // A restart or stop signals the agent alone: supervised processes (own sessions, adopted by
    // the next agent) must survive it, which systemd's default control-group mode would not allow.
    assert.deepEqual(agent.get('KillMode'), ['process']);
    assert.equal(controller.get('KillMode'), undefined, 'the controller unit keeps control-group');
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
        assert.ok(score <= 2, `controller exposure ${score} (docs/deployment.md says 1.6)`);
      } finally {
        removeDir(dir);
      }
    },
  );
});
