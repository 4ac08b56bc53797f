// The configs capability: serves `config.apply`, `config.status`, `config.drift.resolve` and
// `config.traffic` for the proxies on this host (nginx, v2ray, shadowsocks-libev, telemt), each
// run as a supervised process `proxy-<instance>`. The engine and its heavy modules (chokidar,
// diff, smol-toml) load on first use — or at start when instances were applied before, so drift
// is watched again after an agent restart. See README.md here and docs/proxies.md.
import { existsSync, readdirSync } from 'node:fs';
import { KeelError, type ProxyUserSpec } from '@keel/shared';
import type { AgentCapability, CapabilityContext } from '../capabilities.ts';
import type { Supervisor } from '../supervisor/supervisor.ts';
import type { ConfigEngine } from './engine.ts';

/**
 * A result must fit what the link carries (16 MiB from protocol 3, ~200 KiB before): when the
 * rendered files would not, their content is left empty (path and sha256 stay) and the controller
 * shows the hashes only. The rest of the result is small; a quarter of the limit stays spare.
 */
function fitResult<T extends { files: { content: string }[] }>(result: T, maxResultBytes: number): T {
  const total = result.files.reduce((n, f) => n + Buffer.byteLength(f.content, 'utf8'), 0);
  // JSON escapes grow a text at most ~6x for control characters; configs are plain text, where
  // quotes and newlines are the only escapes: 1.25x covers them with room.
  if (total * 1.25 <= maxResultBytes * 0.75) return result;
  return { ...result, files: result.files.map((f) => ({ ...f, content: '' })) };
}

/**
 * The configs capability.
 *
 * @example configsCapability({ dir: join(stateDir, 'configs'), supervisor: supervision.supervisor })
 */
export function configsCapability(opts: { dir: string; supervisor: () => Supervisor | null }) {
  let ctx: CapabilityContext | null = null;
  let engine: Promise<ConfigEngine> | null = null;
  const get = (): Promise<ConfigEngine> => {
    engine ??= (async () => {
      if (!ctx) throw new KeelError('request.failed', 'the configs capability is not started');
      const sup = opts.supervisor();
      if (!sup) throw new KeelError('request.failed', 'the supervisor is not started');
      const [{ ConfigEngine }, { processHostOf, programsFromEnv }] = await Promise.all([
        import('./engine.ts'),
        import('./adapter.ts'),
      ]);
      const e = new ConfigEngine({
        root: opts.dir,
        processes: processHostOf(sup),
        programs: programsFromEnv(),
        log: ctx.log.child({ capability: 'configs' }),
        emit: ctx.emit,
      });
      await e.load();
      return e;
    })();
    engine.catch(() => {
      engine = null;
    });
    return engine;
  };

  return {
    name: 'configs',
    requests: {
      'config.apply': async (params, { maxResultBytes }) =>
        fitResult(
          await (await get()).apply({ ...params, users: params.users as ProxyUserSpec[] }),
          maxResultBytes,
        ),
      'config.status': async () => (await get()).status(),
      'config.drift.resolve': async ({ instance, action }, { maxResultBytes }) =>
        fitResult(await (await get()).resolveDrift(instance, action), maxResultBytes),
      'config.traffic': async ({ instance }) => (await get()).traffic(instance),
    },
    async start(c) {
      ctx = c;
      // Instances applied before this start: load now so their files are watched for drift.
      if (existsSync(opts.dir) && readdirSync(opts.dir).length > 0) {
        await get().catch((err: unknown) => c.log.error({ err }, 'could not load the proxy configs'));
      }
    },
    async stop() {
      const e = engine;
      engine = null;
      if (e) await (await e).close();
    },
  } satisfies AgentCapability;
}
