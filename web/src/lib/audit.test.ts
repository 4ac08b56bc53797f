// Proves how the audit page reads rows: actors, targets, compact details, and the admin check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { auditActor, auditDetail, auditTarget, shortId } from './audit.ts';
import { hasRole } from './roles.ts';

const HOST = '0b6f1a8e-4a3c-4a7e-9a52-6d1c1b1f2a33';

test('auditActor tells users, agents and the system apart', () => {
  assert.deepEqual(auditActor('system', null), { kind: 'system' });
  assert.deepEqual(auditActor(`agent:${HOST}`, null), { kind: 'agent', hostId: HOST });
  assert.deepEqual(auditActor('u1', 'alice'), { kind: 'user', name: 'alice', id: 'u1' });
  assert.deepEqual(auditActor('u2', null), { kind: 'user', name: null, id: 'u2' });
});

test('auditTarget splits kind and id at the first colon', () => {
  assert.equal(auditTarget(null), null);
  assert.deepEqual(auditTarget(`host:${HOST}`), { kind: 'host', id: HOST });
  assert.deepEqual(auditTarget('join_token:a:b'), { kind: 'join_token', id: 'a:b' });
  assert.deepEqual(auditTarget('plain'), { kind: '', id: 'plain' });
});

test('auditDetail is one line of key=value pairs', () => {
  assert.equal(auditDetail({}), '');
  assert.equal(auditDetail(null), '');
  assert.equal(
    auditDetail({ name: 'web-1', rttMs: 1.5, tags: ['a'], gone: undefined, nested: { x: 1 } }),
    'name=web-1  rttMs=1.5  tags=["a"]  nested={"x":1}',
  );
});

test('auditDetail quotes strings that could pass for more pairs or reorder the line', () => {
  // A failed sign-in's username is chosen by whoever tried.
  assert.equal(auditDetail({ username: 'x  reason=ok' }), 'username="x  reason=ok"');
  assert.equal(auditDetail({ username: 'a\u202egnp.exe' }), 'username="a\\u202egnp.exe"');
  assert.equal(auditDetail({ username: 'tab\there' }), 'username="tab\\there"');
  assert.equal(auditDetail({ note: 'plain-text_1' }), 'note=plain-text_1');
});

test('shortId keeps short ids and cuts uuids', () => {
  assert.equal(shortId('abc'), 'abc');
  assert.equal(shortId(HOST), '0b6f1a8e…');
});

test('hasRole follows viewer < operator < admin < owner', () => {
  assert.equal(hasRole({ role: 'owner' }, 'admin'), true);
  assert.equal(hasRole({ role: 'admin' }, 'admin'), true);
  assert.equal(hasRole({ role: 'operator' }, 'admin'), false);
  assert.equal(hasRole({ role: 'viewer' }, 'operator'), false);
  assert.equal(hasRole(null, 'viewer'), false);
});
