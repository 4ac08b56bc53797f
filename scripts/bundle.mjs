#!/usr/bin/env node
// Bundles a daemon (agent or controller) into one ESM file under <workspace>/dist with esbuild, so
// hosts run plain JavaScript without a TypeScript toolchain. Runtime dependencies stay external
// (installed by npm next to it); the protocol package is bundled in. The controller's migrations
// are copied beside its bundle.
import { build } from 'esbuild';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const which = process.argv[2];
if (which !== 'agent' && which !== 'controller') {
  console.error('usage: bundle.mjs agent|controller');
  process.exit(1);
}
const dir = fileURLToPath(new URL(`../${which}/`, import.meta.url));
const pkg = JSON.parse(readFileSync(`${dir}package.json`, 'utf8'));
const external = Object.keys(pkg.dependencies ?? {}).filter((d) => d !== '@keel/shared');
rmSync(`${dir}dist`, { recursive: true, force: true });
await build({
  entryPoints: [`${dir}src/cli.ts`],
  outfile: `${dir}dist/keel-${which}.mjs`,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  external: [...external, ...external.map((d) => `${d}/*`)],
  banner: {
    js: "import { createRequire as __keelRequire } from 'node:module'; const require = __keelRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
if (which === 'controller') cpSync(`${dir}drizzle`, `${dir}dist/drizzle`, { recursive: true });
console.log(`built ${which}/dist/keel-${which}.mjs`);
