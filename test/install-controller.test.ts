// Proves install.sh controller: the controller bundle (npm run build) installed into a temporary
// root with --with-agent starts (0700 data dir, 0640 env file, unit verified), its own host's agent
// enrolls and comes online, it serves the one-line agent install to a new host, a re-run changes
// nothing, and uninstall keeps the data. systemd is not PID 1 here: the stand-in systemctl
// (test/install-stand-in-systemctl.sh) runs the units.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ApiClient, firstAdminFrom } from './helpers/api.ts';
import { controllerRelease } from './helpers/release-cache.ts';
import { seedDatabase } from './helpers/database-template.ts';
import { freePort, removeDir, repoRoot, tempDir } from './helpers/fleet.ts';
import {
  controllerVersion,
  has,
  sh,
  standInSystemctl,
  stopStandInServices,
  versionRe,
} from './install-helpers.ts';

const mode = (path: string) => statSync(path).mode & 0o777;

describe('install.sh controller', () => {
  const built = existsSync(join(repoRoot, 'web/build/index.html'));
  const dirs: string[] = [];
  let work = '';
  after(() => {
    if (work) stopStandInServices(work);
    for (const d of dirs) removeDir(d);
  });

  test(
    'installs the controller bundle with its own agent; it runs and serves the agent install to a new host',
    // npm test builds the console first; a lone run without it has no controller bundle to make.
    {
      // Builds the controller bundle, installs it and an agent, starts both: 106 s seen at load 30.
      timeout: 240_000,
      skip: built || process.env.CI ? false : 'the console is not built (npm run build -w web)',
    },
    async () => {
      work = tempDir('keel-install-ctl-');
      dirs.push(work);
      // `scripts/build-release.mjs controller`'s output, made once per change of its sources.
      const out = join(work, 'bundles');
      controllerRelease(out);
      const bundle = join(out, `keel-controller-${controllerVersion}-linux-${process.arch}.tar.gz`);
      const root = join(work, 'root-ctl');
      // The migrated empty database the other tests start from, so the first open skips initdb.
      await seedDatabase(join(root, 'var/lib/keel-controller'));
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const env = { KEEL_ROOT: root, KEEL_SYSTEMCTL: standInSystemctl, KEEL_WAIT_SECONDS: '90' };
      const installLine = `sh ${repoRoot}install.sh controller --bundle ${bundle} --public-url ${url} --port ${port} --with-agent`;

      const first = await sh(installLine, env, 150_000);
      assert.equal(first.code, 0, first.out);
      assert.match(first.out, /SHA-256 verified/);
      assert.match(first.out, new RegExp(`keel-controller ${versionRe(controllerVersion)} is running`));
      // --with-agent: this host's agent, from the bundle the controller carries, enrolled with a
      // token from keel-controller join-token, online.
      assert.match(first.out, /Making a join token for this host's agent/);
      assert.match(first.out, /Done: this host is online/);
      assert.ok(existsSync(join(root, 'var/lib/keel-agent/enrollment.json')));
      assert.equal(readlinkSync(join(root, 'opt/keel/controller/current')), `releases/${controllerVersion}`);
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
