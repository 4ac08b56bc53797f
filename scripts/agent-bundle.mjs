// The agent's esbuild settings, in one place for every bundle of it: the release
// (scripts/build-release.mjs), the benchmarks' dist bundle (scripts/bundle.mjs) and the one
// `npm test` runs (scripts/test.mjs). What hosts run is then what is measured and tested.
//
// They keep an idle agent small (docs/benchmarks.md, "agent-idle"):
// - Lazy dependencies, outside the bundle: the packages an idle agent never runs (execa, and the
//   configs engine's diff, chokidar and smol-toml) are bundled into a second file beside it,
//   `<bundle>-lazy.cjs`, which the agent require()s on first use. Inside the main bundle they
//   would still cost their source (~400 KB of the 1.4 MB that V8 keeps in the heap while the
//   bundle is loaded; -0.6 MiB idle RSS). An import of execa is replaced by a small module whose
//   listed functions load it on first call (execa: 2.5 MB of heap, ~0.25 s of start-up, only
//   needed when the supervisor first starts a process; naming a function that is not listed fails
//   the build, "No matching export"); the others are only imported with `await import()`, which
//   evaluates their stand-in, and so loads the file, then. The release ships both files (dist/).
// - zod without its translations: zod's index brings ~50 locales (~400 KB of source) that only a
//   `z.config(z.locales.xx())` would use; the agent speaks English (the default, kept).
// - ASCII only: V8 keeps a module's whole source in memory for lazy compilation, one byte per
//   character while every character is Latin-1 and two bytes per character as soon as one is not.
//   A single `—` in a comment of a dependency doubled the agent's 1.7 MB source to 3.4 MB of heap.
//   esbuild escapes strings and identifiers already (`charset: 'ascii'`); asciiOnly() escapes what
//   it leaves (comments, legal comments), which means the same in every JavaScript context.
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Native add-ons that dependencies load inside try/catch when present (speed-ups, macOS only). */
export const optionalNative = ['bufferutil', 'utf-8-validate', 'osx-temperature-sensor'];

/** `require` for the CommonJS dependencies inside an ESM bundle. */
export const requireBanner = {
  js: "import { createRequire as __keelRequire } from 'node:module'; const require = __keelRequire(import.meta.url);",
};

/** Package -> the functions imported from it, each loaded on first call. */
const lazy = { execa: ['execa', 'execaSync'] };
/** Packages only ever imported with `await import()`: whole, from the lazy file, when imported. */
const lazyModules = ['diff', 'chokidar', 'smol-toml'];
/**
 * Node built-ins that only a rarely used part of the agent imports -> the names imported from
 * each and what they are: loaded on first use (see lazyBuiltins). ESM hoists a bundle's imports,
 * so each was loaded and evaluated at every start: in a bare node `node:http2` costs ~0.95 MiB of
 * RSS (0.8 anonymous), `node:dns/promises` ~0.26 (issue 9, metrics footprint).
 */
const lazyNodeBuiltins = {
  'node:http2': { connect: 'function', constants: 'object' }, // configs: v2ray's stats over gRPC
  'node:dgram': { createSocket: 'function' }, // configs: shadowsocks-libev's manager port
  'node:dns/promises': { Resolver: 'class' }, // checks: DNS probes
};

/** The lazy file beside a bundle: `dist/keel-agent.mjs` -> `dist/keel-agent-lazy.cjs`. */
export function lazyFileOf(outfile) {
  return outfile.replace(/\.m?js$/, '') + '-lazy.cjs';
}

/** @returns {import('esbuild').Plugin} */
function lazyDependencies(outfile, resolveDir) {
  const names = [...Object.keys(lazy), ...lazyModules];
  const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
  const lazyFile = lazyFileOf(outfile);
  // Resolved by the bundle's require() (the banner's, relative to the bundle's own file).
  const request = `./${basename(lazyFile)}`;
  return {
    name: 'keel-lazy-dependencies',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'lazy-dependency' }));
      b.onResolve({ filter: /-lazy\.cjs$/ }, (args) =>
        args.importer && args.namespace === 'lazy-dependency'
          ? { path: args.path, external: true }
          : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'lazy-dependency' }, (args) => ({
        contents: lazy[args.path]
          ? [
              `let loaded;`,
              `const load = () => (loaded ??= require(${JSON.stringify(request)})[${JSON.stringify(args.path)}]);`,
              ...lazy[args.path].map((f) => `export function ${f}(...a) { return load().${f}(...a); }`),
            ].join('\n')
          : `module.exports = require(${JSON.stringify(request)})[${JSON.stringify(args.path)}];`,
        loader: 'js',
      }));
      // The lazy file itself, after the bundle: the same target, ASCII only.
      b.onEnd(async (result) => {
        if (result.errors.length) return;
        await b.esbuild.build({
          stdin: {
            contents:
              names.map((n, i) => `import * as m${i} from ${JSON.stringify(n)};`).join('\n') +
              `\nmodule.exports = { ${names.map((n, i) => `${JSON.stringify(n)}: m${i}`).join(', ')} };`,
            resolveDir,
            loader: 'js',
          },
          outfile: lazyFile,
          bundle: true,
          platform: 'node',
          target: b.initialOptions.target,
          format: 'cjs',
          minifySyntax: true,
          charset: 'ascii',
          legalComments: 'eof',
          logLevel: 'warning',
        });
        asciiOnly(lazyFile);
      });
    },
  };
}

/**
 * The agent's imports of lazyNodeBuiltins become small modules that require() the built-in on
 * first use: a function is called through, a class constructed through (`new Resolver()` gives
 * the real class's instance), an object's properties read through. Naming anything not listed
 * fails the build ("No matching export"), so a new use is added here knowingly.
 * @returns {import('esbuild').Plugin}
 */
function lazyBuiltins(root) {
  const src = join(root, 'agent/src/');
  const names = Object.keys(lazyNodeBuiltins);
  const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})$`);
  const standIn = (name, kind) =>
    kind === 'function'
      ? `export function ${name}(...a) { return load().${name}(...a); }`
      : kind === 'class'
        ? `export function ${name}(...a) { return new (load().${name})(...a); }`
        : `export const ${name} = new Proxy({}, { get: (_, k) => load().${name}[k] });`;
  return {
    name: 'keel-lazy-builtins',
    setup(b) {
      b.onResolve({ filter }, (args) =>
        args.importer.startsWith(src) ? { path: args.path, namespace: 'lazy-builtin' } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
        contents: [
          `let loaded;`,
          `const load = () => (loaded ??= require(${JSON.stringify(args.path)}));`,
          ...Object.entries(lazyNodeBuiltins[args.path]).map(([name, kind]) => standIn(name, kind)),
        ].join('\n'),
        loader: 'js',
      }));
    },
  };
}

/**
 * The protocol package's modules marked free of side effects (none has a top-level statement
 * other than declarations), so esbuild leaves out the ones the agent never imports from — the
 * process templates and proxy links, which build their zod schemas when loaded (~0.5 MB of heap)
 * — and, with `pure: ['lazySchema']`, the message schemas nothing in the agent names.
 * @returns {import('esbuild').Plugin}
 */
function sharedWithoutSideEffects(root) {
  const shared = join(root, 'shared/src/');
  return {
    name: 'keel-shared-without-side-effects',
    setup(b) {
      b.onResolve({ filter: /^@keel\/shared$|^\.\.?\/.*\.ts$/ }, async (args) => {
        if (
          args.pluginData === 'keel-shared' ||
          !(args.path === '@keel/shared' || args.importer.startsWith(shared))
        )
          return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: 'keel-shared',
        });
        if (r.errors.length || !r.path.startsWith(shared)) return undefined;
        return { ...r, sideEffects: false };
      });
    },
  };
}

/**
 * In the bundle, an `import('./x.ts')` of the agent's own modules becomes a static import (the
 * expression then resolves to that module's namespace). Run from source (tsx) the CLI and the
 * configs engine load their modules on first use, which keeps `keel-agent help` fast there; in the
 * bundle every module's source is loaded anyway, and one import() makes esbuild wrap every module
 * it reaches in a lazy initializer, which it does not tree-shake: the agent then ran all of the
 * protocol package (the controller's process templates and proxy links, every unused schema).
 * What stays lazy in the bundle is the lazy file (above) and node-pty.
 * @returns {import('esbuild').Plugin}
 */
function ownModulesStatic(root) {
  const src = join(root, 'agent/src/');
  const dynamic = /\bimport\((['"])(\.\.?\/[^'"]+\.ts)\1\)/g;
  return {
    name: 'keel-own-modules-static',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (!args.path.startsWith(src)) return undefined;
        const text = readFileSync(args.path, 'utf8');
        const specifiers = [...new Set([...text.matchAll(dynamic)].map((m) => m[2]))];
        if (!specifiers.length) return undefined;
        const name = (spec) => `__keelStatic${specifiers.indexOf(spec)}`;
        const imports = specifiers.map((spec) => `import * as ${name(spec)} from ${JSON.stringify(spec)};`);
        const contents = text.replace(dynamic, (_, _q, spec) => `Promise.resolve(${name(spec)})`);
        return { contents: `${imports.join(' ')}${contents}`, loader: 'ts' };
      });
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
    plugins: [
      lazyDependencies(outfile, join(root, 'agent/src')),
      lazyBuiltins(root),
      zodWithoutLocales,
      sharedWithoutSideEffects(root),
      ownModulesStatic(root),
      ...plugins,
    ],
    pure: ['lazySchema'],
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
