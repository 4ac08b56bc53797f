// `npm run bench -- proxies-render [users]`: time to render and validate one proxy config with
// 10,000 users (issue 12's benchmark, the agent's part), for v2ray (render + `v2ray -test`),
// telemt (render with smol-toml + parse and format check) and shadowsocks-libev (render + parse),
// next to the peer: the real program's own check alone on the same file (v2ray -test), i.e. the
// floor of a full validation. A user-only v2ray change skips -test (see v2ray.ts). Prints ms per step.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import { execaSync } from 'execa';
import pino from 'pino';
import { adapterSettingsSchemas, type ProxyUserSpec } from '@keel/shared';
import type { AdapterContext } from '../agent/src/configs/adapter.ts';
import { programsFromEnv } from '../agent/src/configs/adapter.ts';
import { v2rayAdapter } from '../agent/src/configs/v2ray.ts';
import { telemtAdapter } from '../agent/src/configs/telemt.ts';
import { shadowsocksAdapter } from '../agent/src/configs/shadowsocks.ts';

const n = Number(process.argv[2] ?? 10_000);
const users: ProxyUserSpec[] = Array.from({ length: n }, (_, i) => ({
  id: `user-${i}`,
  uuid: randomUUID(),
  password: randomBytes(12).toString('hex'),
  secret: randomBytes(16).toString('hex'),
  port: 20_000 + i,
  maxTcpConns: 10,
  dataQuotaBytes: 10 * 2 ** 30,
  expiresAt: Date.UTC(2030, 0, 1),
}));
const dir = mkdtempSync(join(tmpdir(), 'keel-bench-proxies-'));
const ctx: AdapterContext = {
  instance: 'bench',
  dir,
  runDir: join(dir, 'run'),
  processName: 'proxy-bench',
  processes: undefined as never,
  programs: programsFromEnv(),
  log: pino({ level: 'silent' }),
};

async function time<T>(label: string, fn: () => Promise<T> | T): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  console.log(`${label.padEnd(52)} ${(performance.now() - t0).toFixed(0).padStart(6)} ms`);
  return r;
}

console.log(`${n} users, one config each\n`);
const v2Settings = adapterSettingsSchemas.v2ray.parse({
  inbounds: [
    { tag: 'vless', protocol: 'vless', port: 443 },
    { tag: 'vmess', protocol: 'vmess', port: 8443 },
    { tag: 'trojan', protocol: 'trojan', port: 2053 },
  ],
});
const v2files = await time('v2ray: render (3 inbounds x users)', () =>
  v2rayAdapter.render(v2Settings, users, ctx),
);
writeFileSync(join(dir, 'config.json'), v2files[0]!.content);
console.log(`  config.json: ${(v2files[0]!.content.length / 1024).toFixed(0)} KiB`);
await time('v2ray: validate (v2ray -test, via the adapter)', () =>
  v2rayAdapter.validate(dir, { settings: v2Settings, users, files: v2files }, ctx),
);
await time('v2ray: validate a user-only change (one user more)', () =>
  v2rayAdapter.validate(dir, { settings: v2Settings, users, files: v2files }, ctx, {
    settings: v2Settings,
    users: users.slice(1),
    files: [],
  }),
);
await time('  peer: v2ray -test alone on the same file', () =>
  execaSync(ctx.programs.v2ray, ['-test', '-config', join(dir, 'config.json')]),
);

const tmSettings = adapterSettingsSchemas.telemt.parse({ tlsDomain: 'example.org' });
const tmFiles = await time('telemt: render config.toml (smol-toml)', () =>
  telemtAdapter.render(tmSettings, users, ctx),
);
writeFileSync(join(dir, 'config.toml'), tmFiles[0]!.content);
console.log(`  config.toml: ${(tmFiles[0]!.content.length / 1024).toFixed(0)} KiB`);
await time('telemt: validate (parse + documented format check)', () =>
  telemtAdapter.validate(dir, { settings: tmSettings, users, files: tmFiles }, ctx),
);

const ssSettings = adapterSettingsSchemas.shadowsocks.parse({});
await time('shadowsocks: render config.json (port per user)', () =>
  shadowsocksAdapter.render(ssSettings, users, ctx),
);

rmSync(dir, { recursive: true, force: true });
