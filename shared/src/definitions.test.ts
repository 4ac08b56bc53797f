// Proves that a lazy schema is built on first use only, once, and behaves as the schema it stands
// for (parse, errors, shape, composition, JSON Schema); and that loading the protocol package builds
// none of the message families' schemas, so an idle agent pays only for what it validates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { lazySchema } from './definitions.ts';
import { tsLoader } from '../../scripts/test-loader-url.mjs';

const eagerUser = () =>
  z.strictObject({ name: z.string().min(1).max(8), age: z.number().int().nonnegative().default(0) });

test('a lazy schema is built on first use, once, and parses as the schema', () => {
  let builds = 0;
  const user = lazySchema(() => {
    builds++;
    return eagerUser();
  });
  assert.equal(builds, 0);
  assert.deepEqual(user.parse({ name: 'ann' }), { name: 'ann', age: 0 });
  const bad = user.safeParse({ name: '', extra: 1 });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.error?.issues.map((i) => i.code).sort(), ['too_small', 'unrecognized_keys']);
  assert.equal(builds, 1);
  assert.ok(user instanceof z.ZodObject);
  assert.deepEqual(Object.keys(user.shape), ['name', 'age']);
  assert.equal(builds, 1);
});

test('a lazy schema composes: inside objects, unions, extend, optional; JSON Schema as the eager one', () => {
  const user = lazySchema(eagerUser);
  const admin = lazySchema(() => user.extend({ role: z.literal('admin') }));
  const either = z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('user'), user }),
    z.strictObject({ kind: z.literal('none') }),
  ]);
  assert.deepEqual(either.parse({ kind: 'user', user: { name: 'bo' } }), {
    kind: 'user',
    user: { name: 'bo', age: 0 },
  });
  assert.equal(either.safeParse({ kind: 'user', user: { name: 'x'.repeat(9) } }).success, false);
  assert.equal(admin.parse({ name: 'cy', role: 'admin' }).role, 'admin');
  assert.equal(z.object({ u: user.optional() }).parse({}).u, undefined);
  assert.deepEqual(
    z.toJSONSchema(z.object({ u: user, list: z.array(user) })),
    z.toJSONSchema(z.object({ u: eagerUser(), list: z.array(eagerUser()) })),
  );
});

test('loading the protocol package builds no lazy schema; a request builds only what it validates', async () => {
  const index = fileURLToPath(new URL('./index.ts', import.meta.url));
  const script = `
    const s = await import(${JSON.stringify(index)});
    const atLoad = s.builtLazySchemaCount();
    s.requestCatalogue['ping'].params.parse({});
    const afterPing = s.builtLazySchemaCount();
    for (const def of Object.values(s.requestCatalogue)) { def.params.safeParse({}); def.result.safeParse({}); }
    console.log(JSON.stringify({ atLoad, afterPing, all: s.builtLazySchemaCount() }));`;
  // Not spawnSync: a batch's other files keep live links in this process (see launcher.test.ts).
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', tsLoader, '--input-type=module', '-e', script],
    { encoding: 'utf8' },
  );
  const counts = JSON.parse(stdout) as { atLoad: number; afterPing: number; all: number };
  assert.equal(counts.atLoad, 0);
  assert.equal(counts.afterPing, 1);
  assert.ok(counts.all > 30, `every request's schemas build on use (${counts.all})`);
});
