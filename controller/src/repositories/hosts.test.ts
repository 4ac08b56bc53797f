// Proves the hosts repository on every test driver: enrollment consumes join tokens atomically
// (50 concurrent enrolls with one single-use token make exactly one host), each token error is told
// apart, and presence, facts and revocation are stored.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { KeelError } from '@keel/shared';
import type { Db } from '../db/index.ts';
import { joinTokens } from '../db/schema/join-tokens.ts';
import { streamCursors } from '../db/schema/streams.ts';
import { testDatabaseTargets, type TestDatabase } from '../db/test-databases.ts';
import { createHostRepository, toHostView, type HostRepository } from './hosts.ts';
import { createJoinTokenRepository, type JoinTokenRepository } from './join-tokens.ts';
import { sampleFacts } from '../../../test/helpers/facts.ts';

const newKey = () => randomBytes(32).toString('base64url');

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof KeelError, `expected KeelError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

for (const target of testDatabaseTargets()) {
  describe(`hosts repository (${target.driver})`, () => {
    let testDb: TestDatabase;
    let db: Db;
    let hosts: HostRepository;
    let tokens: JoinTokenRepository;

    before(async () => {
      testDb = await target.create();
      db = (await testDb.open()).db;
      hosts = createHostRepository(db);
      tokens = createJoinTokenRepository(db);
    });
    after(() => testDb.cleanup());

    test('enroll creates the host and uses up a single-use token', async () => {
      const { token, secret } = await tokens.create({ ttlSeconds: 3600 });
      const publicKey = newKey();
      const host = await hosts.enroll({ publicKey, name: 'web-1', facts: sampleFacts, tokenSecret: secret });
      assert.equal(host.name, 'web-1');
      assert.equal(host.publicKey, publicKey);
      assert.equal(host.online, false);
      assert.equal(host.revokedAt, null);
      assert.equal(host.agentVersion, '0.1.0');
      assert.deepEqual(host.facts, sampleFacts);
      assert.deepEqual(await hosts.findByPublicKey(publicKey), host);
      assert.deepEqual(await hosts.get(host.id), host);
      const after = await tokens.get(token.id);
      assert.equal(after?.usesLeft, 0);
      assert.ok(after?.lastUsedAt instanceof Date);
    });

    test('applyPresence writes many hosts in one go and never marks a revoked host online', async () => {
      const make = async (name: string) => {
        const { secret } = await tokens.create({ ttlSeconds: 3600 });
        return hosts.enroll({ publicKey: newKey(), name, facts: null, tokenSecret: secret });
      };
      const [a, b, c] = [await make('p-a'), await make('p-b'), await make('p-c')];
      await hosts.revoke(c.id, new Date());
      const at = new Date();
      const rows = await hosts.applyPresence(
        new Map([
          [a.id, { online: true, facts: { ...sampleFacts, hostname: 'a' } }],
          [b.id, { online: false }],
          [c.id, { online: true }],
        ]),
        at,
      );
      const byId = new Map(rows.map((r) => [r.id, r]));
      assert.equal(byId.get(a.id)?.online, true);
      assert.equal(byId.get(a.id)?.facts?.hostname, 'a');
      assert.equal(byId.get(a.id)?.connectedAt?.getTime(), at.getTime());
      assert.equal(byId.get(b.id)?.online, false);
      assert.equal(byId.get(b.id)?.lastSeenAt?.getTime(), at.getTime());
      assert.equal(byId.get(c.id)?.online, false, 'revoked stays offline');
      assert.equal(byId.get(c.id)?.connectedAt, null, 'revoked never connected');
      assert.deepEqual(await hosts.applyPresence(new Map(), at), []);

      // Facts alone leave presence as it is; presence alone leaves facts as they are.
      const later = new Date(at.getTime() + 1000);
      const [factsOnly] = await hosts.applyPresence(
        new Map([[a.id, { facts: { ...sampleFacts, hostname: 'a2', agentVersion: '9.9.9' } }]]),
        later,
      );
      assert.equal(factsOnly?.online, true);
      assert.equal(factsOnly?.connectedAt?.getTime(), at.getTime());
      assert.equal(factsOnly?.facts?.hostname, 'a2');
      assert.equal(factsOnly?.agentVersion, '9.9.9');
      assert.equal(factsOnly?.factsUpdatedAt?.getTime(), later.getTime());
      const [offline] = await hosts.applyPresence(new Map([[a.id, { online: false }]]), later);
      assert.equal(offline?.online, false);
      assert.equal(offline?.facts?.hostname, 'a2');
      assert.equal(offline?.lastSeenAt?.getTime(), later.getTime());

      // A session going online stores the version its agent announced (an upgraded agent shows
      // online on its new release before its facts come); facts in the same change win; a version
      // alone, or for a revoked host, changes nothing.
      const [upgraded] = await hosts.applyPresence(
        new Map([[a.id, { online: true, agentVersion: '10.0.0' }]]),
        later,
      );
      assert.equal(upgraded?.online, true);
      assert.equal(upgraded?.agentVersion, '10.0.0');
      assert.equal(upgraded?.facts?.agentVersion, '9.9.9', 'the facts stay as the agent sent them');
      const [withFacts] = await hosts.applyPresence(
        new Map([
          [a.id, { online: true, agentVersion: '10.0.1', facts: { ...sampleFacts, agentVersion: '10.0.2' } }],
        ]),
        later,
      );
      assert.equal(withFacts?.agentVersion, '10.0.2');
      const [versionOnly] = await hosts.applyPresence(new Map([[a.id, { agentVersion: '10.0.3' }]]), later);
      assert.equal(versionOnly?.agentVersion, '10.0.2');
      const [revoked] = await hosts.applyPresence(
        new Map([[c.id, { online: true, agentVersion: '10.0.4' }]]),
        later,
      );
      assert.equal(revoked?.agentVersion, null);
    });

    test('sessionStates reads revocation and cursors of many hosts in one query; activeKeys lists live keys', async () => {
      const make = async (name: string) => {
        const { secret } = await tokens.create({ ttlSeconds: 3600 });
        return hosts.enroll({ publicKey: newKey(), name, facts: null, tokenSecret: secret });
      };
      const [a, b] = [await make('s-a'), await make('s-b')];
      await db.insert(streamCursors).values([
        { hostId: a.id, stream: 'events', ackedSeq: 41 },
        { hostId: a.id, stream: 'logs', ackedSeq: 7 },
      ]);
      await hosts.revoke(b.id, new Date());
      const gone = '00000000-0000-4000-8000-000000000000';
      const states = await hosts.sessionStates([a.id, b.id, gone, 'not-a-uuid']);
      assert.deepEqual(states.get(a.id), { revoked: false, cursors: { events: 41, logs: 7 } });
      assert.deepEqual(states.get(b.id), { revoked: true, cursors: {} });
      assert.deepEqual(states.get(gone), { revoked: true, cursors: {} }, 'a missing host counts as revoked');
      assert.deepEqual(states.get('not-a-uuid'), { revoked: true, cursors: {} });
      const upper = await hosts.sessionStates([a.id.toUpperCase()]);
      assert.deepEqual(upper.get(a.id.toUpperCase()), { revoked: false, cursors: { events: 41, logs: 7 } });

      const keys = new Map((await hosts.activeKeys()).map((k) => [k.publicKey, k.id]));
      assert.equal(keys.get(a.publicKey), a.id);
      assert.equal(keys.has(b.publicKey), false, 'revoked hosts are not in the key index');
      assert.deepEqual(
        (await hosts.findByPublicKeys([a.publicKey, b.publicKey])).map((k) => k.id).sort(),
        [a.id, b.id].sort(),
      );
    });

    test('50 concurrent enrolls with one single-use token make exactly one host', async () => {
      const { secret } = await tokens.create({ ttlSeconds: 3600 });
      const before = (await hosts.list()).length;
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          hosts.enroll({ publicKey: newKey(), name: `race-${i}`, facts: null, tokenSecret: secret }),
        ),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 49);
      for (const r of lost) {
        assert.ok(r.reason instanceof KeelError, String(r.reason));
        assert.equal(r.reason.code, 'enroll.token_used');
      }
      assert.equal((await hosts.list()).length, before + 1);
    });

    test('a token with 3 uses enrolls 3 hosts, concurrently, and then reports used', async () => {
      const { secret } = await tokens.create({ ttlSeconds: 3600, uses: 3 });
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          hosts.enroll({ publicKey: newKey(), name: `multi-${i}`, facts: null, tokenSecret: secret }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
      await rejectsWith(
        hosts.enroll({ publicKey: newKey(), name: 'x', facts: null, tokenSecret: secret }),
        'enroll.token_used',
      );
    });

    test('expired, used, unknown and revoked tokens are told apart', async () => {
      const now = new Date();
      const expired = await tokens.create({ ttlSeconds: 60, now });
      await rejectsWith(
        hosts.enroll({
          publicKey: newKey(),
          name: 'late',
          facts: null,
          tokenSecret: expired.secret,
          at: new Date(now.getTime() + 61_000),
        }),
        'enroll.token_expired',
      );
      // Still good just before expiry, and the failed attempt did not use it up.
      await hosts.enroll({
        publicKey: newKey(),
        name: 'in-time',
        facts: null,
        tokenSecret: expired.secret,
        at: new Date(now.getTime() + 59_000),
      });
      await rejectsWith(
        hosts.enroll({ publicKey: newKey(), name: 'again', facts: null, tokenSecret: expired.secret }),
        'enroll.token_used',
      );
      await rejectsWith(
        hosts.enroll({
          publicKey: newKey(),
          name: 'x',
          facts: null,
          tokenSecret: `kjt_${randomBytes(32).toString('base64url')}`,
        }),
        'enroll.token_invalid',
      );
      const revoked = await tokens.create({ ttlSeconds: 3600 });
      await db.update(joinTokens).set({ revokedAt: new Date() }).where(eq(joinTokens.id, revoked.token.id));
      await rejectsWith(
        hosts.enroll({ publicKey: newKey(), name: 'x', facts: null, tokenSecret: revoked.secret }),
        'enroll.token_invalid',
      );
      const deleted = await tokens.create({ ttlSeconds: 3600 });
      await tokens.delete(deleted.token.id);
      await rejectsWith(
        hosts.enroll({ publicKey: newKey(), name: 'x', facts: null, tokenSecret: deleted.secret }),
        'enroll.token_invalid',
      );
    });

    test('an already enrolled key fails with key_exists and costs the token no use', async () => {
      const first = await tokens.create({ ttlSeconds: 3600 });
      const publicKey = newKey();
      await hosts.enroll({ publicKey, name: 'dup', facts: null, tokenSecret: first.secret });
      const second = await tokens.create({ ttlSeconds: 3600 });
      await rejectsWith(
        hosts.enroll({ publicKey, name: 'dup', facts: null, tokenSecret: second.secret }),
        'enroll.key_exists',
      );
      assert.equal((await tokens.get(second.token.id))?.usesLeft, 1);
    });

    test('a malformed public key is refused before any token is touched', async () => {
      const { token, secret } = await tokens.create({ ttlSeconds: 3600 });
      await rejectsWith(
        hosts.enroll({ publicKey: 'not-a-key', name: 'x', facts: null, tokenSecret: secret }),
        'request.invalid',
      );
      assert.equal((await tokens.get(token.id))?.usesLeft, 1);
    });

    test('presence, facts and revocation', async () => {
      const { secret } = await tokens.create({ ttlSeconds: 3600 });
      const host = await hosts.enroll({
        publicKey: newKey(),
        name: 'db-1',
        facts: null,
        tokenSecret: secret,
      });
      assert.equal(host.facts, null);
      assert.equal(host.agentVersion, null);

      const t1 = new Date('2030-01-01T00:00:00.000Z');
      const online = await hosts.markOnline(host.id, t1);
      assert.equal(online?.online, true);
      assert.deepEqual(online?.connectedAt, t1);
      assert.deepEqual(online?.lastSeenAt, t1);

      const t2 = new Date('2030-01-01T00:05:00.000Z');
      const updated = await hosts.updateFacts(host.id, { ...sampleFacts, agentVersion: '0.2.0' }, t2);
      assert.equal(updated?.agentVersion, '0.2.0');
      assert.deepEqual(updated?.factsUpdatedAt, t2);
      assert.equal(updated?.facts?.agentVersion, '0.2.0');

      const t3 = new Date('2030-01-01T01:00:00.000Z');
      const offline = await hosts.markOffline(host.id, t3);
      assert.equal(offline?.online, false);
      assert.deepEqual(offline?.connectedAt, t1);
      assert.deepEqual(offline?.lastSeenAt, t3);

      await hosts.markOnline(host.id, t3);
      assert.ok((await hosts.markAllOffline()) >= 1);
      assert.equal((await hosts.get(host.id))?.online, false);
      assert.equal(await hosts.markAllOffline(), 0);

      const t4 = new Date('2030-01-02T00:00:00.000Z');
      const revoked = await hosts.revoke(host.id, t4);
      assert.deepEqual(revoked?.revokedAt, t4);
      // Revoking again keeps the first time.
      const again = await hosts.revoke(host.id, new Date('2030-02-01T00:00:00.000Z'));
      assert.deepEqual(again?.revokedAt, t4);
      // A revoked host is still found by key: the handshake must say "revoked", not "unknown".
      assert.equal((await hosts.findByPublicKey(host.publicKey))?.id, host.id);

      const view = toHostView(again!);
      assert.equal(view.revokedAt, t4.toISOString());
      assert.equal(view.connectedAt, t3.toISOString());
      assert.equal(typeof view.enrolledAt, 'string');
      assert.equal('publicKey' in view, false);
    });

    test('unknown or malformed ids give null, not an error', async () => {
      const missing = '00000000-0000-4000-8000-000000000000';
      assert.equal(await hosts.get(missing), null);
      assert.equal(await hosts.get('nope'), null);
      assert.equal(await hosts.markOnline('nope', new Date()), null);
      assert.equal(await hosts.markOffline(missing, new Date()), null);
      assert.equal(await hosts.revoke("1'; drop table hosts; --", new Date()), null);
      assert.equal(await hosts.updateFacts(missing, sampleFacts), null);
      assert.equal(await hosts.findByPublicKey(newKey()), null);
    });

    test('list is ordered by name', async () => {
      const names = (await hosts.list()).map((h) => h.name);
      assert.deepEqual(
        names,
        [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    });
  });
}
