// Proves the engine's transaction rules with a scripted adapter (a stand-in for a proxy, so each
// failure point can be chosen): validation failure leaves the live files untouched, an activation
// or health failure writes the previous files back and re-activates them, a failed first apply
// stops the proxy and removes its files, a re-push of the same config is `unchanged`, concurrent
// pushes are serialized (N+1 and N in flight together: N is refused), and nothing is written
// outside the instance dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { KeelError, type ProcessStatus } from '@keel/shared';
import type { ProcessHost, ProxyAdapterDefinition, RenderedFile } from './adapter.ts';
import { ConfigEngine } from './engine.ts';

const log = pino({ level: 'silent' });

/** A process host that only records what was asked (no program runs). */
function fakeProcesses() {
  const running = new Set<string>();
  const calls: string[] = [];
  const status = (name: string) =>
    ({
      name,
      state: running.has(name) ? 'running' : 'stopped',
      pid: running.has(name) ? 1 : null,
    }) as unknown as ProcessStatus;
  const host: ProcessHost = {
    apply: async (spec) => {
      calls.push(`apply ${spec.name}`);
      running.add(spec.name);
      return status(spec.name);
    },
    start: async (name) => (running.add(name), status(name)),
    stop: async (name) => {
      calls.push(`stop ${name}`);
      running.delete(name);
      return status(name);
    },
    restart: async (name) => (running.add(name), status(name)),
    remove: async (name) => void running.delete(name),
    has: (name) => running.has(name) || calls.includes(`apply ${name}`),
    status,
  };
  return { host, calls, running };
}

/** A scripted adapter: renders the site's upstream into one file; fails where told. */
function scripted() {
  const script = { validate: true, activate: true, health: true };
  const activations: string[] = [];
  const adapter: ProxyAdapterDefinition<{ sites: { upstream?: string }[] }> = {
    kind: 'nginx',
    settingsSchema: undefined as never,
    render: (settings) => [{ name: 'proxy.conf', content: `upstream ${settings.sites[0]!.upstream}\n` }],
    validate: async () => {
      if (!script.validate) throw new KeelError('config.invalid', 'refused by the program');
    },
    activate: async (next, _prev, ctx) => {
      activations.push((next.files as RenderedFile[])[0]!.content.trim());
      if (!script.activate && activations.length % 2 === 1) throw new Error('reload failed');
      await ctx.processes.apply({ name: ctx.processName, argv: ['x'] });
      return 'reload';
    },
    health: async () => {
      if (!script.health) {
        script.health = true; // the restored config is healthy
        throw new Error('502');
      }
    },
  };
  return { adapter, script, activations };
}

const settings = (port: number) => ({
  sites: [{ serverNames: ['a.test'], port: 8080, upstream: `http://127.0.0.1:${port}` }],
});

test('the engine: validate, rollback on activation and health failure, first-apply cleanup, unchanged, ordering', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'keel-engine-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const p = fakeProcesses();
  const s = scripted();
  const engine = new ConfigEngine({
    root,
    processes: p.host,
    programs: { nginx: 'nginx', v2ray: 'v2ray', ssServer: 'ss-server', telemt: 'telemt' },
    log,
    adapters: { nginx: s.adapter as never },
  });
  await engine.load();
  t.after(() => engine.close());
  const file = join(root, 'edge', 'proxy.conf');
  const push = (generation: number, port: number) =>
    engine.apply({ instance: 'edge', adapter: 'nginx', generation, settings: settings(port), users: [] });

  // A failed first apply (health) stops the proxy and leaves no files.
  s.script.health = false;
  await assert.rejects(
    push(1, 1001),
    (e: KeelError) => e.code === 'config.unhealthy' && /stopped/.test(e.message),
  );
  assert.ok(p.calls.includes('stop proxy-edge'));
  assert.equal(existsSync(file), false);

  assert.equal((await push(2, 1002)).method, 'reload');
  assert.equal(readFileSync(file, 'utf8'), 'upstream http://127.0.0.1:1002\n');

  // Refused at validate: the live file is untouched, no activation happened.
  s.script.validate = false;
  const before = s.activations.length;
  await assert.rejects(push(3, 1003), (e: KeelError) => e.code === 'config.invalid');
  assert.equal(s.activations.length, before);
  assert.equal(readFileSync(file, 'utf8'), 'upstream http://127.0.0.1:1002\n');
  s.script.validate = true;

  // Activation fails: the previous file is back and activated again.
  s.script.activate = false;
  s.activations.length = 0;
  await assert.rejects(
    push(4, 1004),
    (e: KeelError) => e.code === 'config.apply_failed' && /restored/.test(e.message),
  );
  assert.deepEqual(s.activations, ['upstream http://127.0.0.1:1004', 'upstream http://127.0.0.1:1002']);
  assert.equal(readFileSync(file, 'utf8'), 'upstream http://127.0.0.1:1002\n');
  s.script.activate = true;

  // Health fails: rolled back to generation 2.
  s.script.health = false;
  await assert.rejects(
    push(5, 1005),
    (e: KeelError) => e.code === 'config.unhealthy' && /generation 2 was restored/.test(e.message),
  );
  assert.equal(readFileSync(file, 'utf8'), 'upstream http://127.0.0.1:1002\n');
  assert.equal((await engine.status()).instances[0]!.generation, 2);

  // The same config under a new number changes nothing on the proxy.
  s.activations.length = 0;
  assert.equal((await push(6, 1002)).method, 'unchanged');
  assert.deepEqual(s.activations, []);

  // Concurrent pushes: 8 and 7 in flight together; 7 is refused, 8 is what is applied.
  const [r8, r7] = await Promise.allSettled([push(8, 1008), push(7, 1007)]);
  assert.equal(r8.status, 'fulfilled');
  assert.equal(r7.status === 'rejected' && (r7.reason as KeelError).code, 'config.stale_generation');
  assert.equal(readFileSync(file, 'utf8'), 'upstream http://127.0.0.1:1008\n');

  // Only the instance dir was written: its files, its run dir and its state.
  assert.deepEqual(readdirSync(root), ['edge']);
  assert.deepEqual(readdirSync(join(root, 'edge')).sort(), ['.keel-applied.json', 'proxy.conf', 'run']);
});
