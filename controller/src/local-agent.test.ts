// Proves the controller's own local agent enrolls and comes online without its join token ever
// appearing on a command line (/proc/<pid>/cmdline, readable by every local user) or in its
// environment: the token travels on the enroll process's stdin. The running agent gets the glibc
// malloc variables of the agent's systemd unit, as a host's agent does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import pino from 'pino';
import { agentBin, removeDir, startTestController, waitFor } from '../../test/helpers/fleet.ts';
import { AGENT_MALLOC_ENV, startLocalAgent } from './local-agent.ts';
import type { Services } from './services/index.ts';

/** Command lines and environments of this process's children right now, by pid. */
function children(): Map<number, { cmdline: string; environ: string }> {
  const found = new Map<number, { cmdline: string; environ: string }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      found.set(Number(name), {
        cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' '),
        environ: readFileSync(`/proc/${name}/environ`, 'utf8'),
      });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

test(
  'the local agent enrolls with its token on stdin, not in /proc/<pid>/cmdline',
  { timeout: 90_000 },
  async () => {
    const ctl = await startTestController();
    let stop: (() => Promise<void>) | null = null;
    try {
      let secret: string | null = null;
      const joinTokens: Services['joinTokens'] = {
        ...ctl.services.joinTokens,
        async create(input, actor) {
          const created = await ctl.services.joinTokens.create(input, actor);
          secret = created.secret;
          return created;
        },
      };
      const seen = new Map<number, { cmdline: string; environ: string }>();
      const watch = setInterval(() => {
        for (const [pid, p] of children()) if (!seen.has(pid)) seen.set(pid, p);
      }, 25);
      try {
        stop = await startLocalAgent({
          dataDir: ctl.dataDir,
          controllerUrl: `http://127.0.0.1:${ctl.port}`,
          fingerprint: ctl.fingerprint,
          services: { ...ctl.services, joinTokens },
          log: pino({ level: 'silent' }),
          // The run's agent bundle (the launcher's own path is agent/src/cli.test's and main.test's).
          launcher: agentBin,
        });
        const [host] = await ctl.services.hosts.list();
        assert.ok(host, 'the local agent enrolled');
        await waitFor(() => ctl.gateway.isOnline(host.id), 30_000, 'local agent online');
      } finally {
        clearInterval(watch);
      }
      assert.ok(secret, 'a join token was made');
      // This controller's local agent only (its state dir is in the controller's data dir): the
      // other files of a batch share this process, and their fleets' agents are its children too.
      const agents = [...seen.values()].filter(
        (p) => p.cmdline.includes('keel-agent') && p.cmdline.includes(ctl.dataDir),
      );
      assert.ok(
        agents.some((p) => / enroll /.test(p.cmdline)),
        `the enroll process was observed: ${JSON.stringify(agents.map((p) => p.cmdline))}`,
      );
      assert.ok(
        agents.some((p) => / run /.test(p.cmdline)),
        'the run process was observed',
      );
      const unitMalloc = [
        ...readFileSync(new URL('../../systemd/keel-agent.service', import.meta.url), 'utf8').matchAll(
          /^Environment=(MALLOC_.*)$/gm,
        ),
      ].flatMap((m) => m[1]!.split(/\s+/).filter(Boolean));
      assert.ok(
        unitMalloc.some((kv) => kv.startsWith('MALLOC_MMAP_THRESHOLD_=')),
        'the unit sets malloc variables',
      );
      assert.deepEqual(
        Object.fromEntries(
          unitMalloc.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
        ),
        AGENT_MALLOC_ENV,
        "the local agent's malloc variables are the unit's",
      );
      const run = agents.find((p) => / run /.test(p.cmdline))!;
      for (const kv of unitMalloc)
        assert.ok(run.environ.split('\0').includes(kv), `${kv} in the running agent's environment`);
      for (const p of agents) {
        assert.ok(!p.cmdline.includes(secret), `token in the command line: ${p.cmdline}`);
        assert.ok(!p.environ.includes(secret), 'token in the environment');
        assert.doesNotMatch(p.cmdline, / --token /);
      }
    } finally {
      await stop?.();
      await ctl.close();
      removeDir(ctl.dataDir);
    }
  },
);
