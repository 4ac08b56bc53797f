// Proves the join token repository on every test driver: secrets are `kjt_` + 32 random bytes,
// returned once and stored only as their SHA-256; tokens list without secrets and can be deleted.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { joinTokens } from '../db/schema/join-tokens.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { createJoinTokenRepository, hashJoinTokenSecret, type JoinTokenRepository } from './join-tokens.ts';

for (const target of testDatabaseTargets()) {
  describe(`join tokens repository (${target.driver})`, () => {
    let testDb: TestDatabase;
    let db: Db;
    let tokens: JoinTokenRepository;

    before(async () => {
      testDb = await target.create();
      db = (await testDb.open()).db;
      tokens = createJoinTokenRepository(db);
    });
    after(() => testDb.cleanup());

    test('create returns the secret once and stores only its sha256', async () => {
      const now = new Date('2030-05-01T12:00:00.000Z');
      const { token, secret } = await tokens.create({ ttlSeconds: 900, uses: 2, note: 'rack 4', now });
      assert.match(secret, /^kjt_[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(secret.slice(4), 'base64url').length, 32);
      assert.equal(token.note, 'rack 4');
      assert.equal(token.usesLeft, 2);
      assert.equal(token.createdBy, null);
      assert.deepEqual(token.createdAt, now);
      assert.deepEqual(token.expiresAt, new Date(now.getTime() + 900_000));
      assert.equal('secretHash' in token, false);

      const [row] = await db.select().from(joinTokens).where(eq(joinTokens.id, token.id));
      assert.equal(row?.secretHash, createHash('sha256').update(secret).digest('hex'));
      assert.equal(row?.secretHash, hashJoinTokenSecret(secret));
      assert.ok(!Object.values(row!).some((v) => typeof v === 'string' && v.includes(secret.slice(4))));
    });

    test('every secret is different', async () => {
      const secrets = await Promise.all(Array.from({ length: 20 }, () => tokens.create({ ttlSeconds: 60 })));
      assert.equal(new Set(secrets.map((s) => s.secret)).size, 20);
    });

    test('list shows tokens newest first and never a secret or hash', async () => {
      const older = await tokens.create({
        ttlSeconds: 60,
        now: new Date('2031-01-01T00:00:00Z'),
        note: 'older',
      });
      const newer = await tokens.create({
        ttlSeconds: 60,
        now: new Date('2031-01-02T00:00:00Z'),
        note: 'newer',
      });
      const list = await tokens.list();
      const ids = list.map((t) => t.id);
      assert.ok(ids.indexOf(newer.token.id) < ids.indexOf(older.token.id));
      for (const t of list) assert.equal('secretHash' in t, false);
      assert.ok(!JSON.stringify(list).includes(newer.secret.slice(4)));
    });

    test('delete removes a token and reports whether there was one', async () => {
      const { token } = await tokens.create({ ttlSeconds: 60 });
      assert.equal(await tokens.delete(token.id), true);
      assert.equal(await tokens.get(token.id), null);
      assert.equal(await tokens.delete(token.id), false);
      assert.equal(await tokens.delete('not-a-uuid'), false);
      assert.equal(await tokens.get('not-a-uuid'), null);
    });

    test('uses must be a positive integer', async () => {
      await assert.rejects(tokens.create({ ttlSeconds: 60, uses: 0 }), RangeError);
      await assert.rejects(tokens.create({ ttlSeconds: 60, uses: 1.5 }), RangeError);
    });
  });
}
