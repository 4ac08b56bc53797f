#!/usr/bin/env node
// Bundles a daemon (agent or controller) into one ESM file under <workspace>/dist with esbuild, so
// hosts run plain JavaScript without a TypeScript toolchain. Runtime dependencies stay external
// (installed by npm next to it); the protocol package is bundled in. The controller's migrations
// are copied beside its bundle.
//
// Some runtime dependencies are loaded lazily: an import of one of them is replaced by a small
// module whose functions `require()` the real package on first call (Node >= 20.19 loads ES
// modules through require), so an idle agent never loads it. execa (2.5 MB of heap, ~0.25 s of
// start-up on our machine) is only needed when the supervisor first starts a process. Naming a
// function that is not listed here fails the build ("No matching export").
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
// The agent is bundled as the release ships it (scripts/build-release.mjs): every dependency
// inside but node-pty (native, loaded when present) and the optional native add-ons, so what the
// benchmarks measure is what hosts run. The controller keeps its dependencies beside it.
const external =
  which === 'agent'
    ? ['node-pty', 'bufferutil', 'utf-8-validate', 'osx-temperature-sensor']
    : Object.keys(pkg.dependencies ?? {}).filter((d) => d !== '@keel/shared');
/** Package -> the functions imported from it, each loaded on first call. */
const lazy = which === 'agent' ? { execa: ['execa', 'execaSync'] } : {};
/** @type {import('esbuild').Plugin} */
const lazyDependencies = {
  name: 'lazy-dependencies',
  setup(b) {
    const names = Object.keys(lazy);
    if (names.length === 0) return;
    const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
    // The shim's own require() resolves to the package itself: bundled, esbuild wraps it in an
    // initializer that runs on that first require(); external, Node loads it then.
    b.onResolve({ filter }, (args) =>
      args.namespace === 'lazy-dependency' ? undefined : { path: args.path, namespace: 'lazy-dependency' },
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-dependency' }, (args) => ({
      contents: [
        `let loaded;`,
        `const load = () => (loaded ??= require(${JSON.stringify(args.path)}));`,
        ...lazy[args.path].map((f) => `export function ${f}(...a) { return load().${f}(...a); }`),
      ].join('\n'),
      loader: 'js',
      resolveDir: `${dir}src`, // the workspace's node_modules
    }));
  },
};
rmSync(`${dir}dist`, { recursive: true, force: true });
await build({
  entryPoints: [`${dir}src/cli.ts`],
  outfile: `${dir}dist/keel-${which}.mjs`,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  minifySyntax: which === 'agent',
  external: [...external, ...external.map((d) => `${d}/*`)],
  banner: {
    js: "import { createRequire as __keelRequire } from 'node:module'; const require = __keelRequire(import.meta.url);",
  },
  plugins: [lazyDependencies],
  logLevel: 'warning',
});
if (which === 'controller') cpSync(`${dir}drizzle`, `${dir}dist/drizzle`, { recursive: true });
console.log(`built ${which}/dist/keel-${which}.mjs`);
