// Proves the agent makes its ed25519 key once, keeps it private (0600 in a 0700 dir), refuses a
// key others can read, and saves/loads its enrollment atomically with clear errors when damaged.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { keyFingerprint, sign, verify } from '@keel/shared';
import {
  IdentityError,
  loadEnrollment,
  loadOrCreateIdentity,
  saveEnrollment,
  type Enrollment,
} from './index.ts';

function stateDir(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'keel-identity-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return join(root, 'state');
}

const mode = (path: string) => statSync(path).mode & 0o777;

test('first start makes a key pair in a 0700 dir with a 0600 key file; later starts load the same key', async (t) => {
  const dir = stateDir(t);
  const first = await loadOrCreateIdentity(dir);
  assert.equal(mode(dir), 0o700);
  assert.equal(mode(join(dir, 'agent.key')), 0o600);
  assert.equal(first.publicKey.length, 32);
  assert.equal(first.privateKey.asymmetricKeyType, 'ed25519');
  assert.equal(first.publicKeyB64, first.publicKey.toString('base64url'));
  assert.deepEqual(readdirSync(dir), ['agent.key']); // no temp files left behind

  const again = await loadOrCreateIdentity(dir);
  assert.deepEqual(again.publicKey, first.publicKey);
  const message = Buffer.from('transcript');
  assert.ok(verify(first.publicKey, message, sign(again.privateKey, message)));
});

test('agents starting at once agree on one key', async (t) => {
  const dir = stateDir(t);
  const ids = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(dir)));
  for (const id of ids) assert.equal(id.publicKeyB64, ids[0]!.publicKeyB64);
});

test('a key file readable by group or others is refused with the fix in the message', async (t) => {
  const dir = stateDir(t);
  await loadOrCreateIdentity(dir);
  const key = join(dir, 'agent.key');
  for (const loose of [0o640, 0o604, 0o644]) {
    chmodSync(key, loose);
    await assert.rejects(loadOrCreateIdentity(dir), (err: unknown) => {
      assert.ok(err instanceof IdentityError);
      assert.match(err.message, /too open/);
      assert.match(err.message, /chmod 600/);
      return true;
    });
  }
  chmodSync(key, 0o400); // read-only for the owner is fine
  await loadOrCreateIdentity(dir);
});

test('a state dir writable by others, or a key that is not ed25519, is refused', async (t) => {
  const dir = stateDir(t);
  mkdirSync(dir, { mode: 0o700 });
  chmodSync(dir, 0o777);
  await assert.rejects(loadOrCreateIdentity(dir), /writable by group or others/);
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, 'agent.key'), 'not a key', { mode: 0o600 });
  await assert.rejects(loadOrCreateIdentity(dir), /not a readable private key/);
});

const enrollment: Enrollment = {
  controllerUrl: 'wss://keel.example.com',
  controllerPin: keyFingerprint(Buffer.alloc(32, 7)),
  controllerKey: Buffer.alloc(32, 7).toString('base64url'),
  hostId: 'h_01HZX',
  enrolledAt: '2025-01-02T03:04:05.000Z',
};

test('enrollment round-trips through an atomic 0600 file; none yet reads as null', async (t) => {
  const dir = stateDir(t);
  assert.equal(await loadEnrollment(dir), null);
  await saveEnrollment(dir, enrollment);
  assert.equal(mode(join(dir, 'enrollment.json')), 0o600);
  assert.deepEqual(await loadEnrollment(dir), enrollment);
  const moved = { ...enrollment, controllerUrl: 'ws://127.0.0.1:8080' };
  await saveEnrollment(dir, moved);
  assert.deepEqual(await loadEnrollment(dir), moved);
  assert.deepEqual(readdirSync(dir), ['enrollment.json']);
});

test('a damaged enrollment file is a clear error, and an invalid one is never saved', async (t) => {
  const dir = stateDir(t);
  mkdirSync(dir, { mode: 0o700 });
  const path = join(dir, 'enrollment.json');
  writeFileSync(path, '{"controllerUrl": "wss://x', { mode: 0o600 });
  await assert.rejects(loadEnrollment(dir), /enrollment.json is not valid JSON.*enroll again/);
  writeFileSync(path, JSON.stringify({ ...enrollment, controllerPin: 'md5:abc', hostId: '' }));
  await assert.rejects(loadEnrollment(dir), (err: unknown) => {
    assert.ok(err instanceof IdentityError);
    assert.match(err.message, /controllerPin/);
    assert.match(err.message, /hostId/);
    return true;
  });
  await assert.rejects(saveEnrollment(dir, { ...enrollment, controllerUrl: 'ftp://x' }));
  await assert.rejects(saveEnrollment(dir, { ...enrollment, controllerKey: 'short' }));
});
