// Proves `keel-controller reset-password`: a generated password is printed once and works, the old
// one stops working and the user's sessions end; a weak stdin password and an unknown user fail
// with exit 1; usage errors exit 2.
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { openTestApp, type TestApp } from '../app-fixture.ts';
import { resetPasswordCommand } from './reset-password.ts';

let t: TestApp;
before(async () => {
  t = await openTestApp();
});
after(async () => {
  await t.close();
});

async function run(argv: string[], stdin = '') {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await resetPasswordCommand(argv, {
    users: t.services.users,
    stdin: Readable.from([stdin]),
    stdout: out,
    stderr: err,
  });
  return { code, out: o, err: e };
}

test('a generated password is printed once, works, and ends the old sessions', async () => {
  await t.createUser('alice', 'admin');
  const before = await t.login('alice');
  const r = await run(['--username', 'Alice']);
  assert.equal(r.code, 0, r.err);
  const password = /Password \(shown only now, store it safely\): (\S+)/.exec(r.out)?.[1];
  assert.ok(password);
  assert.equal((await t.request('/api/v1/auth/session', { as: before })).status, 401);
  await t.login('alice', password);
  const old = await t.request('/api/v1/auth/login', {
    method: 'POST',
    json: { username: 'alice', password: 'correct horse battery staple' },
  });
  assert.equal(old.status, 401);
});

test('stdin passwords follow the policy; unknown users and usage errors fail', async () => {
  await t.createUser('bob', 'viewer');
  assert.match(
    (await run(['--username', 'bob', '--password-stdin'], 'password1234\n')).err,
    /common passwords/,
  );
  assert.equal((await run(['--username', 'bob', '--password-stdin'], 'a long enough new secret\n')).code, 0);
  await t.login('bob', 'a long enough new secret');
  assert.equal((await run(['--username', 'nobody'])).code, 1);
  assert.equal((await run([])).code, 2);
  assert.equal((await run(['--bogus'])).code, 2);
});
