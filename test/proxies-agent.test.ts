// Proves the config capability end to end over the real link (a controller in this process, a
// real `keel-agent run` process; the proxy is the telemt STAND-IN, test/telemt-stand-in.mjs,
// because telemt is not packaged for Debian): the agent announces config.*, an apply answers with
// the rendered files, an older generation comes back as `config.stale_generation`, a hand edit of
// the applied file reaches the controller as a stored `config.drift` host event with a diff and
// shows in config.status, adopt returns the edited content, and traffic is read.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeelError } from '@keel/shared';
import { kill, removeDir, repoRoot, startFleet, waitFor, type Proc } from './helpers/fleet.ts';
import { freePort } from './proxies-agent-setup.ts';

const procs: Proc[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) await kill(p);
  for (const d of dirs) removeDir(d);
});

test(
  'config.* over the link: apply, stale refused, drift event stored, adopt, traffic',
  { timeout: 120_000 },
  async () => {
    const fleet = await startFleet(procs, dirs, {
      agentEnv: { KEEL_TELEMT_BIN: join(repoRoot, 'test/telemt-stand-in.mjs') },
    });
    const { ctl, hostId } = fleet;
    after(() => ctl.close());
    const settings = {
      port: await freePort(),
      listenAddress: '127.0.0.1',
      tlsDomain: 'petrovich.ru',
      metricsPort: await freePort(),
    };
    const users = [{ id: 'alice', secret: '0123456789abcdef0123456789abcdef' }];
    try {
      const applied = await ctl.gateway.request(hostId, 'config.apply', {
        instance: 'mt',
        adapter: 'telemt',
        generation: 2,
        settings,
        users,
        reason: 'test',
      });
      assert.equal(applied.generation, 2);
      assert.equal(applied.method, 'restart');
      assert.match(
        applied.files[0]!.content,
        /\[access\.users\]\nalice = "0123456789abcdef0123456789abcdef"/,
      );

      await assert.rejects(
        ctl.gateway.request(hostId, 'config.apply', {
          instance: 'mt',
          adapter: 'telemt',
          generation: 1,
          settings,
          users,
        }),
        (err: KeelError) => err.code === 'config.stale_generation',
      );

      appendFileSync(applied.files[0]!.path, '# edited on the host\n');
      const drift = await waitFor(
        async () =>
          (await ctl.services.hostEvents.read(hostId, 0, 1_000)).events.find(
            (e) => e.kind === 'config.drift',
          ),
        20_000,
        'config.drift event stored',
      );
      assert.equal(drift.data.instance, 'mt');
      assert.equal(drift.data.path, applied.files[0]!.path);
      assert.match(String(drift.data.diff), /^\+# edited on the host$/m);
      const status = await ctl.gateway.request(hostId, 'config.status', {});
      assert.equal(status.instances[0]!.drift.length, 1);

      const adopted = await ctl.gateway.request(hostId, 'config.drift.resolve', {
        instance: 'mt',
        action: 'adopt',
      });
      assert.match(adopted.files[0]!.content, /# edited on the host\n$/);
      assert.equal((await ctl.gateway.request(hostId, 'config.status', {})).instances[0]!.drift.length, 0);

      const traffic = await ctl.gateway.request(hostId, 'config.traffic', { instance: 'mt' });
      assert.deepEqual(
        traffic.users.map((u) => u.id),
        ['alice'],
      );
      assert.match(traffic.counterEpoch, /^\d+@\d+$/);
    } finally {
      // The proxy is a supervised process: it would outlive the agent.
      await ctl.gateway.request(hostId, 'process.remove', { name: 'proxy-mt' }).catch(() => {});
    }
  },
);
