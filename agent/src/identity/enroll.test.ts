// Proves how enrollHost fails, which `keel-agent enroll` turns into its exit code: a state dir that
// cannot hold an identity rejects with its own error before the controller is asked (cli.ts: exit 1);
// a controller not reached rejects with EnrollFailed whose cause is a non-fatal LinkClosed (exit 1),
// and nothing is saved. Enrolling for real runs in the end-to-end files (test/helpers/fleet.ts).
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { LinkClosed } from '../link/connection.ts';
import { EnrollFailed, enrollHost } from './enroll.ts';
import { ENROLLMENT_FILE, IdentityError } from './index.ts';

function stateDir(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'keel-enroll-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return join(root, 'state');
}

// Nothing listens on port 9 (discard) here.
const unreachable = { controllerUrl: 'http://127.0.0.1:9', token: 'kjt_x', pin: 'sha256:x' };

test('a state dir that cannot hold an identity fails with its own error, not EnrollFailed', async (t) => {
  const dir = stateDir(t);
  mkdirSync(dir, { mode: 0o700 });
  chmodSync(dir, 0o777);
  await assert.rejects(enrollHost({ ...unreachable, stateDir: dir }), (err) => {
    assert.ok(err instanceof IdentityError, String(err));
    return true;
  });
});

test('a controller not reached: EnrollFailed, caused by a non-fatal LinkClosed; nothing saved', async (t) => {
  const dir = stateDir(t);
  await assert.rejects(enrollHost({ ...unreachable, stateDir: dir }), (err) => {
    assert.ok(err instanceof EnrollFailed, String(err));
    assert.match(err.message, /^enroll failed: /);
    assert.ok(err.cause instanceof LinkClosed && !err.cause.fatal, String(err.cause));
    return true;
  });
  assert.equal(existsSync(join(dir, ENROLLMENT_FILE)), false);
});
