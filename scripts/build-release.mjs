#!/usr/bin/env node
// Release artifacts (`npm run build`): a versioned agent bundle and a controller bundle, each a
// .tar.gz with a SHA-256 checksum file beside it, plus SHA256SUMS over all of them, in dist/.
//
//   keel-agent-<version>.tar.gz            keel-agent-<version>/{package.json, bin/, dist/, systemd/}
//     One esbuild bundle with every dependency inside but the optional native node-pty (the
//     terminal uses util-linux script(1) without it), so the same file runs on every Linux
//     architecture. A host needs Node.js >= 20.19 and nothing else.
//   keel-controller-<version>-linux-<arch>.tar.gz
//     The controller bundled the same way, with its migrations, the built console (dist/web),
//     install.sh and the agent bundle it serves to hosts (dist/agent/), the systemd units, and the
//     only parts that cannot be bundled in node_modules/: PGlite (WebAssembly and data files),
//     @node-rs/argon2 and lz4-napi (prebuilt native addons for this platform) and Swagger UI's four assets.
//
// Usage: node scripts/build-release.mjs [agent|controller|all] [--out DIR] [--agent-version V]
// (default all, into <repo>/dist). The controller needs the console built first (web/build).
// --agent-version builds the agent from the same sources under another version (its package.json
// and the version it reports): how the upgrade tests make a real newer release.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { agentBundleOptions, asciiOnly, requireBanner } from './agent-bundle.mjs';
import { controllerExternal } from './controller-bundle.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({
  options: { out: { type: 'string' }, 'agent-version': { type: 'string' } },
  allowPositionals: true,
});
const which = positionals[0] ?? 'all';
if (!['agent', 'controller', 'all'].includes(which)) {
  console.error('usage: build-release.mjs [agent|controller|all] [--out DIR] [--agent-version V]');
  process.exit(2);
}
const agentVersion = values['agent-version'];
if (
  agentVersion !== undefined &&
  !/^\d{1,6}\.\d{1,6}\.\d{1,6}(?:-[0-9A-Za-z.-]{1,40})?$/.test(agentVersion)
) {
  console.error(`build-release.mjs: --agent-version must look like 1.2.3 or 1.2.3-rc.1, not ${agentVersion}`);
  process.exit(2);
}
const out = resolve(values.out ?? join(root, 'dist'));
mkdirSync(out, { recursive: true });

const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

/** Hex SHA-256 of a file. */
function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A reproducible .tar.gz of `dir` (its last path element is the archive's top directory). */
function tarball(dir, file) {
  const r = spawnSync(
    'tar',
    [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-C',
      dirname(dir),
      '-cf',
      '-',
      dir.split('/').pop(),
    ],
    { maxBuffer: 1 << 30 },
  );
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  const gz = spawnSync('gzip', ['-n', '-9'], { input: r.stdout, maxBuffer: 1 << 30 });
  if (gz.status !== 0) throw new Error(`gzip failed: ${gz.stderr}`);
  writeFileSync(file, gz.stdout);
  const sum = sha256(file);
  // The format sha256sum -c reads.
  writeFileSync(`${file}.sha256`, `${sum}  ${file.split('/').pop()}\n`);
  return sum;
}

/** The package.json a bundle carries: name, version (read by the daemon), module type, engines. */
function bundlePackageJson(pkg, binName) {
  return `${JSON.stringify(
    {
      name: pkg.name,
      version: pkg.version,
      private: true,
      type: 'module',
      engines: pkg.engines,
      bin: { [binName]: `./bin/${binName}.mjs` },
    },
    null,
    2,
  )}\n`;
}

/** Builds the agent bundle into `out`; returns its file name. */
async function buildAgent() {
  const pkg = readJson(join(root, 'agent/package.json'));
  if (agentVersion) pkg.version = agentVersion;
  // The version the agent reports comes from its package.json, inlined by esbuild: give it this one.
  const versionPlugin = {
    name: 'keel-agent-version',
    setup(b) {
      b.onLoad({ filter: /[\\/]agent[\\/]package\.json$/ }, () => ({
        contents: JSON.stringify(pkg),
        loader: 'json',
      }));
    },
  };
  const name = `keel-agent-${pkg.version}`;
  const work = mkdtempSync(join(tmpdir(), 'keel-build-'));
  try {
    const top = join(work, name);
    // scripts/agent-bundle.mjs: node-pty stays out (it loads when present, else `script` serves),
    // execa and the configs engine's packages load on first use from dist/keel-agent-lazy.cjs
    // (written beside it), ASCII-only source (half the heap for it).
    const agentFile = join(top, 'dist/keel-agent.mjs');
    await build(agentBundleOptions(root, { outfile: agentFile, plugins: [versionPlugin] }));
    asciiOnly(agentFile);
    writeFileSync(join(top, 'package.json'), bundlePackageJson(pkg, 'keel-agent'));
    mkdirSync(join(top, 'bin'));
    cpSync(join(root, 'agent/bin/keel-agent.mjs'), join(top, 'bin/keel-agent.mjs'));
    chmodSync(join(top, 'bin/keel-agent.mjs'), 0o755);
    mkdirSync(join(top, 'systemd'));
    cpSync(join(root, 'systemd/keel-agent.service'), join(top, 'systemd/keel-agent.service'));
    const file = join(out, `${name}.tar.gz`);
    const sum = tarball(top, file);
    console.log(`built dist/${name}.tar.gz  sha256 ${sum}`);
    return `${name}.tar.gz`;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Copies an installed package (from the repo's node_modules) into the bundle's node_modules. */
function copyPackage(pkgName, dest, filter = () => true) {
  const from = join(root, 'node_modules', pkgName);
  if (!existsSync(join(from, 'package.json'))) throw new Error(`${pkgName} is not installed (npm ci)`);
  cpSync(from, join(dest, 'node_modules', pkgName), {
    recursive: true,
    filter: (src) => !src.endsWith('.map') && !src.endsWith('.d.ts') && filter(src),
  });
}

/**
 * Copies a prebuilt native addon: its package and the per-platform packages beside it that npm
 * installed (named `<prefix><platform>`, e.g. `@node-rs/argon2-linux-x64-gnu`).
 */
function copyNativePackage(pkgName, prefix, dest) {
  copyPackage(pkgName, dest);
  const scope = dirname(prefix);
  const stem = prefix.slice(scope.length + 1);
  for (const native of readdirSync(join(root, 'node_modules', scope))) {
    if (native.startsWith(stem)) copyPackage(`${scope}/${native}`, dest);
  }
}

/** Builds the controller bundle (with the agent bundle inside) into `out`; returns its file name. */
async function buildController(agentFile) {
  const pkg = readJson(join(root, 'controller/package.json'));
  const web = join(root, 'web/build');
  if (!existsSync(join(web, 'index.html'))) {
    throw new Error('the console is not built: run `npm run build -w web` first (npm run build does)');
  }
  const name = `keel-controller-${pkg.version}`;
  const file = `${name}-linux-${process.arch}.tar.gz`;
  const work = mkdtempSync(join(tmpdir(), 'keel-build-'));
  try {
    const top = join(work, name);
    await build({
      entryPoints: [join(root, 'controller/src/cli.ts')],
      outfile: join(top, 'dist/keel-controller.mjs'),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      minifySyntax: true,
      legalComments: 'eof',
      external: controllerExternal,
      banner: requireBanner,
      logLevel: 'warning',
    });
    writeFileSync(join(top, 'package.json'), bundlePackageJson(pkg, 'keel-controller'));
    mkdirSync(join(top, 'bin'));
    cpSync(join(root, 'controller/bin/keel-controller.mjs'), join(top, 'bin/keel-controller.mjs'));
    chmodSync(join(top, 'bin/keel-controller.mjs'), 0o755);
    cpSync(join(root, 'controller/drizzle'), join(top, 'dist/drizzle'), { recursive: true });
    cpSync(web, join(top, 'dist/web'), { recursive: true });
    cpSync(join(root, 'install.sh'), join(top, 'dist/install.sh'));
    mkdirSync(join(top, 'dist/agent'));
    for (const f of [agentFile, `${agentFile}.sha256`]) cpSync(join(out, f), join(top, 'dist/agent', f));
    cpSync(join(root, 'systemd'), join(top, 'systemd'), { recursive: true });
    // The unbundled parts. PGlite's optional extensions stay out (Keel loads none).
    copyPackage('@electric-sql/pglite', top, (src) => !/\/dist\/[a-z_0-9]+\.tar\.gz$/.test(src));
    // Password hashing and the stream chunk codec (controller/src/repositories/chunk-codec.ts):
    // prebuilt addons, each binary in a package per platform.
    copyNativePackage('@node-rs/argon2', '@node-rs/argon2-', top);
    copyNativePackage('lz4-napi', '@antoniomuso/lz4-napi-', top);
    const swagger = join(top, 'node_modules/swagger-ui-dist');
    mkdirSync(swagger, { recursive: true });
    for (const f of [
      'package.json',
      'swagger-ui.css',
      'swagger-ui-bundle.js',
      'favicon-32x32.png',
      'favicon-16x16.png',
    ]) {
      cpSync(join(root, 'node_modules/swagger-ui-dist', f), join(swagger, f));
    }
    const sum = tarball(top, join(out, file));
    console.log(`built dist/${file}  sha256 ${sum}`);
    return file;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const built = [];
if (which === 'agent' || which === 'all' || which === 'controller') built.push(await buildAgent());
if (which === 'controller' || which === 'all') built.push(await buildController(built[0]));
// SHA256SUMS lists every artifact in dist/ (this build's and earlier versions').
const sums = readdirSync(out)
  .filter((f) => f.endsWith('.tar.gz'))
  .sort()
  .map((f) => `${sha256(join(out, f))}  ${f}\n`)
  .join('');
writeFileSync(join(out, 'SHA256SUMS'), sums);
