// Proves `keel-controller create-admin`: a generated password is printed once and works, a password
// from stdin is used as given, a taken username or bad flags fail with a message, and the first
// boot's ensureFirstAdmin creates `admin` only on an empty database.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../db/index.ts';
import { seedDatabase } from '../../../test/helpers/database-template.ts';
import { createAuditRepository } from '../repositories/audit.ts';
import { createUsersRepository } from '../repositories/users.ts';
import { createAuditService } from '../services/audit.ts';
import { verifyPassword } from '../services/auth.ts';
import { createUsersService } from '../services/users.ts';
import { createAdminCommand } from './create-admin.ts';

let dir: string;
let database: OpenDatabase;
const log = pino({ level: 'silent' });

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'keel-cli-test-'));
  await seedDatabase(dir); // a copy of a migrated empty database: no initdb
  database = await openDatabase({ dataDir: dir });
});
after(async () => {
  await database.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(argv: string[], stdinText = '') {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const users = createUsersService({
    users: usersRepo(),
    audit: createAuditService({ audit: createAuditRepository(database.db), log }),
  });
  const code = await createAdminCommand(argv, {
    users,
    stdin: Readable.from([stdinText]),
    stdout,
    stderr,
  });
  return { code, out, err };
}

const usersRepo = () => createUsersRepository(database.db);

describe('ensureFirstAdmin', () => {
  test('creates admin (owner) with a generated 20+ character password once, then never again', async () => {
    const users = createUsersService({
      users: usersRepo(),
      audit: createAuditService({ audit: createAuditRepository(database.db), log }),
    });
    const first = await users.ensureFirstAdmin();
    assert.ok(first);
    assert.equal(first.user.username, 'admin');
    assert.equal(first.user.role, 'owner');
    assert.ok(first.password.length >= 20);
    const row = await usersRepo().findByUsername('admin');
    assert.ok(row && row.passwordHash.startsWith('$argon2id$'));
    assert.ok(await verifyPassword(row.passwordHash, first.password));
    assert.equal(await users.ensureFirstAdmin(), null);
  });
});

describe('create-admin', () => {
  test('generates and prints a password that signs in', async () => {
    const { code, out } = await run(['--username', 'Ops']);
    assert.equal(code, 0);
    const password = /Password \(shown only now, store it safely\): (\S+)/.exec(out)?.[1];
    assert.ok(password && password.length >= 20, out);
    const row = await usersRepo().findByUsername('ops');
    assert.equal(row?.role, 'admin');
    assert.ok(await verifyPassword(row!.passwordHash, password));
  });

  test('--password-stdin takes the first line of stdin and prints no password', async () => {
    const { code, out } = await run(
      ['--username', 'ci', '--password-stdin', '--role', 'owner'],
      'a long enough secret\n',
    );
    assert.equal(code, 0);
    assert.doesNotMatch(out, /Password/);
    const row = await usersRepo().findByUsername('ci');
    assert.equal(row?.role, 'owner');
    assert.ok(await verifyPassword(row!.passwordHash, 'a long enough secret'));
  });

  test('fails clearly on a taken name, a short password, a bad role or a missing username', async () => {
    assert.equal((await run(['--username', 'ops'])).code, 1);
    assert.match(
      (await run(['--username', 'short', '--password-stdin'], 'tiny\n')).err,
      /12-1024 characters/,
    );
    assert.equal((await run(['--username', 'x', '--role', 'viewer'])).code, 2);
    assert.match((await run([])).err, /--username is required/);
    assert.equal((await run(['--bogus'])).code, 2);
  });
});
