// Proves the /events stream follows its user's access while open: a grant removed or added, a host taken out of a group or tagged into one, and a user made scoped change what the open stream carries at once (`event: access`; no event of a host no longer visible is sent once the change is stored, even one published before the stream re-read the access; hosts newly visible flow after `access`), losing the last visible host or the session (revoked by an admin, the user deleted, an API token revoked) ends it with `event: closed` and a reason, and a change that bypassed the audit trail (another replica) is caught at the next heartbeat.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTestApp, TEST_PASSWORD, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import type { HostView } from '../controller/src/gateway/types.ts';
import { createGroupsRepository } from '../controller/src/repositories/groups.ts';

/** Per test: a hung read fails the test instead of the file. */
const bound = { timeout: 60_000 };
let t: TestApp;
let owner: SignedIn;
let hostA: string;
let hostB: string;
let groupA: string;
let groupB: string;

const enrollHost = (name: string) => t.enrollHost(name);

function view(id: string, name: string): HostView {
  return {
    id,
    name,
    online: true,
    connectedAt: '2026-01-01T00:00:00.000Z',
    lastSeenAt: '2026-01-01T00:00:00.000Z',
    enrolledAt: '2026-01-01T00:00:00.000Z',
    revokedAt: null,
    agentVersion: '0.1.0',
    facts: null,
    capabilities: null,
  };
}

/** Publishes a fleet change of a host; `name` tells the events apart. */
function publish(hostId: string, name: string) {
  t.bus.publish({ type: 'host', host: view(hostId, name) });
}

interface SseEvent {
  event: string;
  data: string;
}

/** An open /events stream read event by event (heartbeat comments skipped). */
async function openStream(init: Parameters<TestApp['request']>[1], path = '/api/v1/events') {
  const res = await t.request(path, init);
  // (Not the body in the message: an endless stream would never end reading.)
  if (res.status !== 200) assert.fail(`GET ${path}: ${res.status} ${await res.text()}`);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;
  async function next(): Promise<SseEvent | null> {
    for (;;) {
      const cut = buffer.indexOf('\n\n');
      if (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const lines = block.split('\n');
        const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
        if (!event) continue; // a comment (heartbeat)
        const data = lines
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        return { event, data };
      }
      if (ended) return null;
      const { value, done } = await reader.read();
      if (done) ended = true;
      else buffer += decoder.decode(value, { stream: true });
    }
  }
  /** Every event up to and including the first that `until` matches (fails if the stream ends first). */
  async function until(match: (e: SseEvent) => boolean): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    for (;;) {
      const e = await next();
      assert.ok(e, `the stream ended; seen: ${JSON.stringify(seen)}`);
      seen.push(e);
      if (match(e)) return seen;
    }
  }
  /** Host names delivered up to and including `marker`. */
  async function hostsUntil(marker: string): Promise<string[]> {
    const seen = await until((e) => e.event === 'host' && (JSON.parse(e.data) as HostView).name === marker);
    return seen.filter((e) => e.event === 'host').map((e) => (JSON.parse(e.data) as HostView).name);
  }
  /** Events up to and including host `marker`: host names, other events by their type. */
  async function namesUntil(marker: string): Promise<string[]> {
    const seen = await until((e) => e.event === 'host' && (JSON.parse(e.data) as HostView).name === marker);
    return seen.map((e) => (e.event === 'host' ? (JSON.parse(e.data) as HostView).name : e.event));
  }
  /** Reads to the end: the events left, the stream being over. */
  async function rest(): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    for (let e = await next(); e; e = await next()) seen.push(e);
    return seen;
  }
  await until((e) => e.event === 'ready');
  return { next, until, hostsUntil, namesUntil, rest, close: () => reader.cancel() };
}

const isAccess = (e: SseEvent) => e.event === 'access';

async function call(path: string, method: string, json?: unknown, as: SignedIn = owner) {
  const res = await t.request(path, { method, json, as });
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return res.status === 204 ? {} : ((await res.json()) as Record<string, { id: string }>);
}

/** A new user (signed in) with the given role, scope and grants. */
async function user(role: 'viewer' | 'operator', scoped: boolean, grantOn: string[] = []) {
  const username = `u-${Math.random().toString(36).slice(2, 8)}`;
  const made = await call('/api/v1/users', 'POST', { username, password: TEST_PASSWORD, role, scoped });
  const grants: string[] = [];
  for (const groupId of grantOn) {
    grants.push((await call(`/api/v1/users/${made.user!.id}/grants`, 'POST', { groupId, role })).grant!.id);
  }
  return { id: made.user!.id, grants, signedIn: await t.login(username) };
}

before(async () => {
  // The heartbeat's re-check is the backstop the last two tests prove (the proxies change stream
  // takes its period from the same setting); the others must not need it (their changes reach the
  // stream through the audit trail at once).
  t = await openTestApp({ appDeps: { events: { heartbeatMs: 2_000 } } });
  owner = await t.signInAs('owner');
  hostA = await enrollHost('game-1');
  hostB = await enrollHost('proxy-1');
  groupA = (await call('/api/v1/groups', 'POST', { name: 'game servers', tags: ['game'], hostIds: [hostA] }))
    .group!.id;
  groupB = (await call('/api/v1/groups', 'POST', { name: 'proxies', hostIds: [hostB] })).group!.id;
});
after(async () => {
  await t.close();
});

describe('/events follows access changes while open', () => {
  test('a grant removed stops its hosts at once; a grant added brings them', bound, async () => {
    const u = await user('viewer', true, [groupA, groupB]);
    const s = await openStream({ as: u.signedIn });
    publish(hostA, 'a-1');
    publish(hostB, 'b-1');
    assert.deepEqual(await s.hostsUntil('b-1'), ['a-1', 'b-1']);

    await call(`/api/v1/users/${u.id}/grants/${u.grants[0]}`, 'DELETE');
    // Published right after the change, before the stream said anything: already filtered.
    publish(hostA, 'a-2');
    publish(hostB, 'b-2');
    assert.deepEqual(await s.namesUntil('b-2'), ['access', 'b-2'], 'host A after its grant was removed');

    await call(`/api/v1/users/${u.id}/grants`, 'POST', { groupId: groupA, role: 'viewer' });
    await s.until(isAccess);
    publish(hostA, 'a-3');
    publish(hostB, 'b-3');
    assert.deepEqual(await s.hostsUntil('b-3'), ['a-3', 'b-3']);
    await s.close();
  });

  test('a host taken out of a group, then tagged into it again', bound, async () => {
    const u = await user('operator', true, [groupA, groupB]);
    const s = await openStream({ as: u.signedIn });
    await call(`/api/v1/groups/${groupA}`, 'PATCH', { hostIds: [] });
    publish(hostA, 'a-out');
    publish(hostB, 'b-out');
    assert.deepEqual(await s.namesUntil('b-out'), ['access', 'b-out']);

    await call(`/api/v1/host-tags/${hostA}`, 'PUT', { tags: ['game'] });
    await s.until(isAccess);
    publish(hostA, 'a-in');
    publish(hostB, 'b-in');
    assert.deepEqual(await s.hostsUntil('b-in'), ['a-in', 'b-in']);
    await s.close();
    await call(`/api/v1/host-tags/${hostA}`, 'PUT', { tags: [] });
    await call(`/api/v1/groups/${groupA}`, 'PATCH', { hostIds: [hostA] });
  });

  test('a user made scoped sees only their granted hosts from then on', bound, async () => {
    const u = await user('viewer', false);
    const s = await openStream({ as: u.signedIn });
    publish(hostA, 'a-wide');
    publish(hostB, 'b-wide');
    assert.deepEqual(await s.hostsUntil('b-wide'), ['a-wide', 'b-wide']);
    await call(`/api/v1/users/${u.id}/grants`, 'POST', { groupId: groupB, role: 'viewer' });
    await call(`/api/v1/users/${u.id}`, 'PATCH', { scoped: true });
    publish(hostA, 'a-scoped');
    publish(hostB, 'b-scoped');
    assert.deepEqual(await s.namesUntil('b-scoped'), ['access', 'b-scoped']);
    await s.close();
  });

  test('losing the last visible host ends the stream with reason access.revoked', bound, async () => {
    const u = await user('viewer', true, [groupB]);
    const s = await openStream({ as: u.signedIn });
    await call(`/api/v1/users/${u.id}/grants/${u.grants[0]}`, 'DELETE');
    publish(hostB, 'b-after');
    const rest = await s.rest();
    assert.deepEqual(
      rest.map((e) => e.event),
      ['closed'],
      'nothing after the grant was removed but the closing event',
    );
    assert.equal((JSON.parse(rest[0]!.data) as { reason: string }).reason, 'access.revoked');
  });

  test(
    'a session revoked by an admin, and a deleted user, end the stream with session.ended',
    bound,
    async () => {
      const revoked = await user('viewer', false);
      const deleted = await user('viewer', false);
      const s1 = await openStream({ as: revoked.signedIn });
      const s2 = await openStream({ as: deleted.signedIn });
      const sessions = (await (
        await t.request(`/api/v1/users/${revoked.id}/sessions`, { as: owner })
      ).json()) as { sessions: { id: string }[] };
      await call(`/api/v1/users/${revoked.id}/sessions/${sessions.sessions[0]!.id}`, 'DELETE');
      await call(`/api/v1/users/${deleted.id}`, 'DELETE');
      for (const s of [s1, s2]) {
        const closed = (await s.rest()).filter((e) => e.event !== 'host');
        assert.deepEqual(
          closed.map((e) => [e.event, (JSON.parse(e.data) as { reason: string }).reason]),
          [['closed', 'session.ended']],
        );
      }
    },
  );

  test('an API token revoked ends its stream', bound, async () => {
    const u = await user('viewer', false);
    const made = await t.request('/api/v1/tokens', {
      method: 'POST',
      json: { name: 'watcher', permissions: ['host.view'] },
      as: u.signedIn,
    });
    const { token, secret } = (await made.json()) as { token: { id: string }; secret: string };
    const s = await openStream({ headers: { authorization: `Bearer ${secret}` } });
    await call(`/api/v1/tokens/${token.id}`, 'DELETE', undefined, u.signedIn);
    const rest = (await s.rest()).filter((e) => e.event !== 'host');
    assert.equal(rest.length, 1);
    assert.equal(rest[0]!.event, 'closed');
    assert.equal((JSON.parse(rest[0]!.data) as { reason: string }).reason, 'session.ended');
  });

  test(
    'the proxies change stream re-reads access at its heartbeat: a revoked session ends it',
    { timeout: 60_000 },
    async () => {
      const u = await user('viewer', false);
      const s = await openStream(
        { as: u.signedIn, headers: { accept: 'text/event-stream' } },
        '/api/v1/proxies/events',
      );
      const sessions = (await (await t.request(`/api/v1/users/${u.id}/sessions`, { as: owner })).json()) as {
        sessions: { id: string }[];
      };
      await call(`/api/v1/users/${u.id}/sessions/${sessions.sessions[0]!.id}`, 'DELETE');
      // Within one heartbeat (the file's 2 s; 15 s by default): the closing event, then the end of the stream.
      const rest = await s.rest();
      assert.deepEqual(
        rest.map((e) => [e.event, (JSON.parse(e.data) as { reason?: string }).reason]),
        [['closed', 'session.ended']],
      );
    },
  );

  test(
    'a change written past the audit trail (another replica) is caught at the next heartbeat',
    bound,
    async () => {
      const u = await user('viewer', true, [groupA, groupB]);
      const s = await openStream({ as: u.signedIn });
      // Straight in the database: no audit entry, so only the heartbeat's re-check can see it.
      assert.ok(await createGroupsRepository(t.db).revokeGrant(u.id, u.grants[0]!));
      await s.until(isAccess);
      publish(hostA, 'a-quiet');
      publish(hostB, 'b-quiet');
      assert.deepEqual(await s.hostsUntil('b-quiet'), ['b-quiet']);
      await s.close();
    },
  );
});
