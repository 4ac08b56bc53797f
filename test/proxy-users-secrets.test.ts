// Proves proxy users' protocol secrets are sealed at rest under the master key and opened in the
// repository only: the stored secret, uuid and password are `keel1:` values that hold none of the
// clear text while every read (get, list, the batch a node's config is made from) answers them in
// clear; a regenerated secret is sealed too; rows stored in clear before sealing (or under a retired
// key) are read as they are and sealed by sealStoredSecrets (what the controller runs at start); a
// sealed value copied into another user's row does not open there (secret.unreadable).
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { KeelError } from '@keel/shared';
import { openTestApp, type TestApp } from '../controller/src/app-fixture.ts';
import { proxyUsers } from '../controller/src/db/schema/proxy-users.ts';
import { createProxyUsersRepository } from '../controller/src/repositories/proxy-users.ts';
import { createSecretBox } from '../controller/src/secrets.ts';

let t: TestApp;
const box = createSecretBox(randomBytes(32));
before(async () => {
  t = await openTestApp();
});
after(async () => {
  await t.close();
});

const raw = async (id: string) => (await t.db.select().from(proxyUsers).where(eq(proxyUsers.id, id)))[0]!;
const fresh = () => ({
  name: `u-${randomBytes(4).toString('hex')}`,
  secret: randomBytes(16).toString('hex'),
  uuid: randomUUID(),
  password: randomBytes(18).toString('base64url'),
  subscriptionToken: randomBytes(32).toString('base64url'),
});

test('secrets are sealed in the row and clear in every read', { timeout: 60_000 }, async () => {
  const repo = createProxyUsersRepository(t.db, box);
  const clear = fresh();
  const made = await repo.create(clear);
  assert.equal(made.secret, clear.secret);
  const stored = await raw(made.id);
  for (const column of ['secret', 'uuid', 'password'] as const) {
    assert.match(stored[column], /^keel1:/, column);
    assert.ok(!stored[column].includes(clear[column]), `${column} holds no clear text`);
  }
  assert.deepEqual(
    [(await repo.get(made.id))!.uuid, (await repo.getMany([made.id]))[0]!.password],
    [clear.uuid, clear.password],
  );
  const listed = (await repo.list({ ownerId: null, search: clear.name, limit: 10, offset: 0 })).rows;
  assert.equal(listed[0]!.secret, clear.secret);
  const next = randomBytes(16).toString('hex');
  await repo.update(made.id, { secret: next });
  assert.match((await raw(made.id)).secret, /^keel1:/);
  assert.equal((await repo.get(made.id))!.secret, next);
});

test(
  'rows in clear are read as they are and sealed at start; a moved value does not open',
  { timeout: 60_000 },
  async () => {
    const plain = createProxyUsersRepository(t.db); // a database from before sealing
    const sealed = createProxyUsersRepository(t.db, box);
    const clear = fresh();
    const old = await plain.create(clear);
    assert.equal((await raw(old.id)).uuid, clear.uuid, 'stored in clear');
    assert.equal((await sealed.get(old.id))!.uuid, clear.uuid, 'read as it is');
    assert.ok((await sealed.sealStoredSecrets()) >= 1);
    assert.match((await raw(old.id)).uuid, /^keel1:/);
    assert.equal((await sealed.get(old.id))!.uuid, clear.uuid);
    assert.equal(await sealed.sealStoredSecrets(), 0, 'nothing left in clear');
    // A sealed value is bound to its row: copied into another user's row it does not open.
    const other = await sealed.create(fresh());
    await t.db
      .update(proxyUsers)
      .set({ password: (await raw(old.id)).password })
      .where(eq(proxyUsers.id, other.id));
    await assert.rejects(sealed.get(other.id), (err: unknown) => {
      assert.ok(err instanceof KeelError);
      assert.equal(err.code, 'secret.unreadable');
      return true;
    });
  },
);
