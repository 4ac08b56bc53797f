// The console build reused across runs (scripts/console-build.mjs, used by npm test and npm start):
// built again whenever an input changed, never a stale console; reused when nothing did.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { consoleBuilt, ensureConsoleBuild } from '../scripts/console-build.mjs';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A checkout with a console's inputs, and a stand-in build that counts its runs. */
function checkout() {
  const root = mkdtempSync(join(tmpdir(), 'keel-console-build-'));
  dirs.push(root);
  const put = (path: string, text: string) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  put('web/src/routes/+page.svelte', '<h1>Fleet</h1>');
  put('web/vite.config.ts', 'export default {};');
  put('shared/src/index.ts', 'export const a = 1;');
  put('package-lock.json', '{"lockfileVersion":3}');
  let builds = 0;
  let mtime = 1_000_000;
  const build = (r: string) => {
    assert.equal(r, root);
    builds += 1;
    // What vite writes: outputs the hash must ignore, and an index.html with a new time.
    put('web/build/index.html', `<html>${builds}</html>`);
    put('web/.svelte-kit/output/x.js', `${builds}`);
    mtime += 10;
    utimesSync(join(root, 'web/build/index.html'), mtime, mtime);
    return 0;
  };
  const ensure = (nodeVersion = 'v20.0.0') => ensureConsoleBuild(root, { build, nodeVersion }).built;
  return { root, put, ensure, builds: () => builds };
}

test('built once, then reused while nothing changed', () => {
  const c = checkout();
  assert.equal(consoleBuilt(c.root), false);
  assert.equal(c.ensure(), true);
  assert.equal(consoleBuilt(c.root), true);
  assert.equal(c.ensure(), false);
  assert.equal(c.ensure(), false);
  assert.equal(c.builds(), 1);
});

test('a changed, added or removed input (sources, config, packages, Node) builds again; the build outputs are not inputs', () => {
  const c = checkout();
  c.ensure();
  c.put('web/src/routes/+page.svelte', '<h1>Hosts</h1>');
  assert.equal(c.ensure(), true, 'a changed web source');
  assert.equal(c.ensure(), false);
  c.put('shared/src/index.ts', 'export const a = 2;');
  assert.equal(c.ensure(), true, 'a changed shared source');
  c.put('shared/src/more.ts', 'export const b = 1;');
  assert.equal(c.ensure(), true, 'an added shared source');
  rmSync(join(c.root, 'shared/src/more.ts'));
  assert.equal(c.ensure(), true, 'a removed shared source');
  c.put('web/vite.config.ts', 'export default { base: "/" };');
  assert.equal(c.ensure(), true, 'a changed config');
  c.put('package-lock.json', '{"lockfileVersion":3,"packages":{}}');
  assert.equal(c.ensure(), true, 'a changed package-lock.json');
  c.put('shared/package.json', '{"exports":{}}');
  assert.equal(c.ensure(), true, 'an added shared/package.json');
  c.put('tsconfig.base.json', '{"compilerOptions":{}}');
  assert.equal(c.ensure(), true, 'an added tsconfig.base.json');
  assert.equal(c.ensure('v22.0.0'), true, 'another Node version');
  assert.equal(c.ensure('v22.0.0'), false);
  c.put('web/.svelte-kit/output/x.js', 'changed');
  assert.equal(c.ensure('v22.0.0'), false, 'the outputs are not inputs');
  assert.equal(c.builds(), 10);
});

test('a build made by hand since, or a missing one, is built again', () => {
  const c = checkout();
  c.ensure();
  utimesSync(join(c.root, 'web/build/index.html'), 5, 5);
  assert.equal(c.ensure(), true, 'an index.html the stamp does not know');
  rmSync(join(c.root, 'web/build'), { recursive: true });
  assert.equal(c.ensure(), true, 'no build');
  assert.equal(c.builds(), 3);
});

test('a failed build leaves no stamp: the next run builds', () => {
  const c = checkout();
  assert.deepEqual(ensureConsoleBuild(c.root, { build: () => 2 }), { built: true, status: 2 });
  assert.equal(c.ensure(), true);
  assert.equal(c.builds(), 1);
});
