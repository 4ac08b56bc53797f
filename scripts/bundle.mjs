#!/usr/bin/env node
// Bundles a daemon (agent or controller) into one ESM file under <workspace>/dist with esbuild, so
// hosts run plain JavaScript without a TypeScript toolchain. The agent is bundled as the release
// ships it (scripts/agent-bundle.mjs, shared with scripts/build-release.mjs: every dependency
// inside but node-pty and the optional native add-ons, execa loaded on first use, ASCII-only
// source), so what the benchmarks measure is what hosts run. The controller keeps its runtime
// dependencies external (installed by npm next to it) and gets its migrations copied beside it.
import { build } from 'esbuild';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { agentBundleOptions, asciiOnly, requireBanner } from './agent-bundle.mjs';

const which = process.argv[2];
if (which !== 'agent' && which !== 'controller') {
  console.error('usage: bundle.mjs agent|controller');
  process.exit(1);
}
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = `${root}${which}/`;
const outfile = `${dir}dist/keel-${which}.mjs`;
rmSync(`${dir}dist`, { recursive: true, force: true });
if (which === 'agent') {
  await build(agentBundleOptions(root, { outfile, sourcemap: true }));
  asciiOnly(outfile);
} else {
  const pkg = JSON.parse(readFileSync(`${dir}package.json`, 'utf8'));
  const external = Object.keys(pkg.dependencies ?? {}).filter((d) => d !== '@keel/shared');
  await build({
    entryPoints: [`${dir}src/cli.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    sourcemap: true,
    external: [...external, ...external.map((d) => `${d}/*`)],
    banner: requireBanner,
    logLevel: 'warning',
  });
  cpSync(`${dir}drizzle`, `${dir}dist/drizzle`, { recursive: true });
}
console.log(`built ${which}/dist/keel-${which}.mjs`);
