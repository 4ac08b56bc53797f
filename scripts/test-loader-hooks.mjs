// Module hooks of scripts/test-loader.mjs (they run on Node's loader thread).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bump when the transform's options change: cached output of other options is not reused. */
const VERSION = '1';
const cacheDir = join(process.env.KEEL_TEST_CACHE_DIR ?? tmpdir(), 'keel-test-ts');
let esbuild;

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !/\.[cm]?ts$/.test(new URL(url).pathname)) return nextLoad(url, context);
  const file = fileURLToPath(url);
  const source = readFileSync(file, 'utf8');
  const format = file.endsWith('.cts') ? 'commonjs' : 'module';
  const key = createHash('sha256').update(VERSION).update(file).update('\0').update(source).digest('hex');
  const cached = join(cacheDir, `${key.slice(0, 32)}.js`);
  try {
    return { format, source: readFileSync(cached, 'utf8'), shortCircuit: true };
  } catch {
    // Not cached yet.
  }
  esbuild ??= await import('esbuild');
  const out = esbuild.transformSync(source, {
    loader: 'ts',
    format: format === 'module' ? 'esm' : 'cjs',
    target: 'node20',
    sourcemap: 'inline',
    sourcefile: file,
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true, target: 'ES2022' } },
  });
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    writeFileSync(tmp, out.code);
    renameSync(tmp, cached);
  } catch {
    // A cache that cannot be written only costs the next process a transform.
  }
  return { format, source: out.code, shortCircuit: true };
}
