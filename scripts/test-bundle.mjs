// Bundles the test files of a `npm test` run for scripts/test.mjs, so that the test processes start
// without the TypeScript loader: `node scripts/test-bundle.mjs <outdir> <file…>` (run with
// --experimental-import-meta-resolve) writes <outdir>/<file without .ts>.js for each file, with the
// code they share in chunks beside them (esbuild's splitting: a batch of files in one process loads
// the controller once, as through the loader) and linked source maps (the runner maps the places
// in what it prints back to the .ts lines). Prints nothing on success; exits 1 with esbuild's
// message.
//
// Why: through scripts/test-loader.mjs a test process spends ~0.6 s of CPU more to load the same
// code (every one of ~540 modules is resolved and loaded through the hooks' worker thread, and
// compiled as its own module): 30 Nov, docs.test 3.0 -> 2.4 CPU-s, access-matrix 7.4 -> 6.9.
//
// Packages the controller and agent bundle into their releases (their package.json's dependencies,
// less what their bundles leave outside: PGlite, the N-API add-ons, Swagger UI, node-pty, execa)
// are bundled here too, with what they import: loading them as ~1,000 modules of node_modules (and
// the CommonJS ones through Node's export scan) cost a test process ~0.6 CPU-s of its ~1 s to
// import test/helpers/fleet.ts (1 Dec, docs/testing.md). Other packages (the tests' own:
// playwright-core, axe-core...) are not bundled, each imported from the file Node's own
// resolver picks from the importing source file (so a workspace's nested node_modules still win);
// `import.meta.url`, `import.meta.dirname` and `import.meta.filename` keep the source file's own
// values (fixtures, migrations and bins found beside the source are found as before).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { optionalNative, requireBanner } from './agent-bundle.mjs';
import { controllerUnbundled } from './controller-bundle.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const [outdir, ...files] = process.argv.slice(2);
// Without the flag Node 20 ignores import.meta.resolve's parent, and a workspace's nested package
// (controller/node_modules/yaml) would silently resolve to the root's.
if (!process.execArgv.includes('--experimental-import-meta-resolve')) {
  console.error('run with node --experimental-import-meta-resolve (scripts/test.mjs does)');
  process.exit(1);
}

/** A bare import's package name (`@scope/name` or `name`). */
const packageOf = (path) =>
  path
    .split('/')
    .slice(0, path.startsWith('@') ? 2 : 1)
    .join('/');
/** Never bundled: what the release bundles leave in node_modules (data files, add-ons), execa. */
const unbundled = new Set([...controllerUnbundled, ...optionalNative, 'node-pty', 'execa']);
/** Bundled: the dependencies the controller's and the agent's release bundles carry. */
const bundled = new Set(
  ['controller', 'agent', 'shared']
    .flatMap((w) =>
      Object.keys(JSON.parse(readFileSync(join(root, w, 'package.json'), 'utf8')).dependencies ?? {}),
    )
    .filter((d) => !d.startsWith('@keel/') && !unbundled.has(d)),
);

/**
 * CommonJS packages the tests import by name whose ES module entry only re-exports the CommonJS one:
 * loaded with require() instead, which skips Node's export scan of their code (playwright-core:
 * 7 MB, ~0.17 CPU-s more per browser test process as an ES module, 1 Dec).
 */
const required = new Set(['playwright-core']);

/** The ES module standing for a `required` package: its properties but `_` ones, read at bundle time. */
const requiredModule = {
  name: 'keel-required',
  setup(b) {
    b.onLoad({ filter: /.*/, namespace: 'keel-required' }, (args) => {
      const names = Object.keys(createRequire(args.path)(args.path)).filter(
        (n) => /^[A-Za-z$][\w$]*$/.test(n) && n !== 'default',
      );
      return {
        contents: [
          `import { createRequire } from 'node:module';`,
          `const m = createRequire(${JSON.stringify(args.path)})(${JSON.stringify(args.path)});`,
          'export default m;',
          ...names.map((n) => `export const ${n} = m.${n};`),
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

/**
 * Node's builtins and the packages not bundled stay imports, resolved now as Node would from the
 * importer; the bundled packages, and whatever they import but the unbundled ones, are bundled.
 */
const externals = {
  name: 'keel-externals',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      // The workspaces' own packages are source: bundled like relative imports.
      if (args.path.startsWith('@keel/')) return undefined;
      if (args.path.startsWith('node:')) return { path: args.path, external: true };
      const pkg = packageOf(args.path);
      // A package loaded with import() stays outside, loaded on first use as in the product (and
      // esbuild's code splitting gives an import() of a bundled CommonJS package only `default`:
      // nodemailer's createTransport was undefined).
      if (
        args.kind !== 'dynamic-import' &&
        !unbundled.has(pkg) &&
        (bundled.has(pkg) || args.importer.includes('/node_modules/'))
      )
        return undefined;
      if (required.has(args.path) && args.kind === 'import-statement')
        return { path: createRequire(args.importer).resolve(args.path), namespace: 'keel-required' };
      let url;
      try {
        url = import.meta.resolve(args.path, pathToFileURL(args.importer).href);
      } catch {
        // Left to Node at run time (an optional dependency that is not installed, say).
        return { path: args.path, external: true };
      }
      return { path: url.startsWith('file:') ? fileURLToPath(url) : url, external: true };
    });
  },
};

/** import.meta's file-bound values keep the source file's own (the bundle lives elsewhere). */
const importMeta = {
  name: 'keel-import-meta',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
      if (args.path.includes('/node_modules/')) return undefined;
      const source = readFileSync(args.path, 'utf8');
      const contents = source
        .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll('import.meta.dirname', JSON.stringify(dirname(args.path)))
        .replaceAll('import.meta.filename', JSON.stringify(args.path));
      return { contents, loader: /\.[cm]?ts$/.test(args.path) ? 'ts' : 'js', resolveDir: dirname(args.path) };
    });
  },
};

try {
  await build({
    entryPoints: files.map((f) => ({
      in: resolve(root, f),
      out: relative(root, resolve(root, f)).replace(/\.[cm]?ts$/, ''),
    })),
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Node's own resolution for what is bundled too: no "module" field or condition.
    mainFields: ['main'],
    conditions: [],
    sourcemap: 'linked',
    // Places only, without the sources: a third the size (the runner reads a map to name a place).
    sourcesContent: false,
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true, target: 'ES2022' } },
    plugins: [externals, requiredModule, importMeta],
    // require() for the bundled CommonJS packages (as in the release bundles).
    banner: requireBanner,
    logLevel: 'silent',
    chunkNames: 'chunks/[name]-[hash]',
  });
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
