// The agent's esbuild settings, in one place for every bundle of it: the release
// (scripts/build-release.mjs), the benchmarks' dist bundle (scripts/bundle.mjs) and the one
// `npm test` runs (scripts/test.mjs). What hosts run is then what is measured and tested.
//
// They keep an idle agent small (docs/benchmarks.md, "agent-idle"):
// - Lazy dependencies: an import of a listed package is replaced by a small module whose functions
//   `require()` the package on first call (inside the bundle, esbuild's lazy initializer), so an
//   idle agent never loads it. execa (2.5 MB of heap, ~0.25 s of start-up) is only needed when the
//   supervisor first starts a process. Naming a function that is not listed fails the build ("No
//   matching export").
// - zod without its translations: zod's index brings ~50 locales (~400 KB of source) that only a
//   `z.config(z.locales.xx())` would use; the agent speaks English (the default, kept).
// - ASCII only: V8 keeps a module's whole source in memory for lazy compilation, one byte per
//   character while every character is Latin-1 and two bytes per character as soon as one is not.
//   A single `—` in a comment of a dependency doubled the agent's 1.7 MB source to 3.4 MB of heap.
//   esbuild escapes strings and identifiers already (`charset: 'ascii'`); asciiOnly() escapes what
//   it leaves (comments, legal comments), which means the same in every JavaScript context.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Native add-ons that dependencies load inside try/catch when present (speed-ups, macOS only). */
export const optionalNative = ['bufferutil', 'utf-8-validate', 'osx-temperature-sensor'];

/** `require` for the CommonJS dependencies inside an ESM bundle. */
export const requireBanner = {
  js: "import { createRequire as __keelRequire } from 'node:module'; const require = __keelRequire(import.meta.url);",
};

/** Package -> the functions imported from it, each loaded on first call. */
const lazy = { execa: ['execa', 'execaSync'] };

/** @returns {import('esbuild').Plugin} */
function lazyDependencies(resolveDir) {
  const names = Object.keys(lazy);
  const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
  return {
    name: 'keel-lazy-dependencies',
    setup(b) {
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
        resolveDir,
      }));
    },
  };
}

/** @type {import('esbuild').Plugin} */
const zodWithoutLocales = {
  name: 'keel-zod-without-locales',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'keel-empty' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'keel-empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

/**
 * esbuild options for an agent bundle of `root`'s sources into `outfile`. `external`: packages
 * left out (default: node-pty, which loads when installed, and the optional add-ons); `plugins`
 * are added after the agent's own.
 *
 * @example await build(agentBundleOptions(root, { outfile })); asciiOnly(outfile);
 * @returns {import('esbuild').BuildOptions}
 */
export function agentBundleOptions(
  root,
  { outfile, external = ['node-pty', ...optionalNative], plugins = [], ...rest },
) {
  return {
    entryPoints: [join(root, 'agent/src/cli.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minifySyntax: true,
    charset: 'ascii',
    legalComments: 'eof',
    external: [...external, ...external.map((d) => `${d}/*`)],
    banner: requireBanner,
    plugins: [lazyDependencies(join(root, 'agent/src')), zodWithoutLocales, ...plugins],
    logLevel: 'warning',
    ...rest,
  };
}

/** Rewrites a built file so that every character is ASCII (see the header); returns its size. */
export function asciiOnly(file) {
  const text = readFileSync(file, 'utf8');
  // eslint-disable-next-line no-control-regex
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) writeFileSync(file, ascii);
  return Buffer.byteLength(ascii);
}
