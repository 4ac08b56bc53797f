#!/usr/bin/env node
// `npm run bench -- <name> [args]`: runs bench/<name>.ts, which prints its figures and the peer
// they compare against. Without a name, lists the benchmarks.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const [name, ...rest] = process.argv.slice(2);
const available = readdirSync(`${root}bench`)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.slice(0, -3));
if (!name || !existsSync(`${root}bench/${name}.ts`)) {
  console.log(`usage: npm run bench -- <name>\nbenchmarks: ${available.join(', ')}`);
  process.exit(name ? 1 : 0);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', `${root}bench/${name}.ts`, ...rest], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
