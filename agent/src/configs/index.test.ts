// Proves the configs capability behind the link's request serving: `config.*` params are checked
// before the engine runs, the engine's answers pass the catalogue's result schemas (apply, status,
// traffic, drift.resolve) with the real nginx, an unknown instance is `config.not_found`, and the
// capability loads its applied instances again after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { serveRequest } from '../link/requests.ts';
import type { Spool } from '../link/spool.ts';
import {
  composeCapabilities,
  startCapabilities,
  stopCapabilities,
  type CapabilityContext,
} from '../capabilities.ts';
import { supervisorCapability } from '../supervisor/index.ts';
import { configsCapability } from './index.ts';
import { freePort } from '../../../test/helpers/ports.ts';
import { MemorySpool } from '../../../test/helpers/memory-spool.ts';

const log = pino({ level: 'silent' });
const hasNginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].some((p) => existsSync(p)) || Boolean(process.env.CI);

async function agent(stateDir: string) {
  const supervision = supervisorCapability({ dir: join(stateDir, 'processes') });
  const caps = [
    supervision,
    configsCapability({ dir: join(stateDir, 'configs'), supervisor: () => supervision.supervisor() }),
  ];
  const composed = composeCapabilities(caps);
  const spool = new MemorySpool();
  const ctx: CapabilityContext = {
    log,
    emit: () => {},
    send: () => {},
    onSession: () => {},
    stream: () => spool as unknown as Spool,
  };
  await startCapabilities(caps, ctx);
  let id = 0;
  return {
    supervision,
    call: (method: string, params: unknown) =>
      serveRequest(
        { type: 'req', id: `r${++id}`, method, timeoutMs: 60_000, params },
        composed.handlers,
        log,
      ),
    stop: () => stopCapabilities(caps, log),
  };
}

test(
  'config.* through the link: params checked, results match the catalogue, state survives a restart',
  { skip: !hasNginx && 'nginx is not installed', timeout: 90_000 },
  async (t) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'keel-configs-'));
    const a = await agent(stateDir);
    const port = await freePort();
    const settings = {
      listenAddress: '127.0.0.1',
      sites: [{ serverNames: ['_'], port, root: '/nonexistent-root' }],
    };

    const bad = await a.call('config.apply', {
      instance: 'web',
      adapter: 'nginx',
      generation: 0,
      settings,
      users: [],
    });
    assert.equal(bad.ok, false);
    assert.equal(!bad.ok && bad.error.code, 'request.invalid');
    const badSettings = await a.call('config.apply', {
      instance: 'web',
      adapter: 'nginx',
      generation: 1,
      settings: { sites: [] },
      users: [],
    });
    assert.equal(!badSettings.ok && badSettings.error.code, 'config.invalid');

    const applied = await a.call('config.apply', {
      instance: 'web',
      adapter: 'nginx',
      generation: 1,
      settings,
      users: [],
      reason: 'first',
    });
    assert.ok(applied.ok, JSON.stringify(applied));
    const status = await a.call('config.status', {});
    assert.ok(status.ok);
    const s = (status.ok ? status.result : null) as {
      instances: { instance: string; generation: number; drift: unknown[] }[];
    };
    assert.deepEqual(
      s.instances.map((i) => [i.instance, i.generation, i.drift.length]),
      [['web', 1, 0]],
    );
    const traffic = await a.call('config.traffic', { instance: 'web' });
    assert.ok(traffic.ok);
    const missing = await a.call('config.traffic', { instance: 'nope' });
    assert.equal(!missing.ok && missing.error.code, 'config.not_found');
    const resolved = await a.call('config.drift.resolve', { instance: 'web', action: 'overwrite' });
    assert.ok(resolved.ok, JSON.stringify(resolved));
    await a.stop();

    // A new agent over the same state dir knows generation 1 (and refuses it again).
    const b = await agent(stateDir);
    t.after(async () => {
      for (const p of b.supervision.supervisor()?.list() ?? [])
        await b.supervision.supervisor()!.remove(p.name);
      await b.stop();
      rmSync(stateDir, { recursive: true, force: true });
    });
    const again = await b.call('config.apply', {
      instance: 'web',
      adapter: 'nginx',
      generation: 1,
      settings,
      users: [],
    });
    assert.equal(!again.ok && again.error.code, 'config.stale_generation');
  },
);
