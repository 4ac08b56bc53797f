// Proves sign-in throttling holds under concurrency: 200 parallel attempts get at most the
// documented number of password checks (1 at a time per username, 5 failures per 15-minute
// window), every refusal is 429 with Retry-After, the right password works once the window is
// over, existing and unknown usernames get the same answers (also when 50 addresses spray 60 names,
// each address cut off at its budget), a user's own address is not locked
// out by strangers failing on the name, and at most 8 checks run at once in all. Time is a
// controlled clock; the password check is the real argon2id, counted. What is counted does not
// depend on a check's cost, so the hashes are low-cost argon2id (64 KiB, 1 pass: ~0.1 ms a check
// against ~40 ms at the production parameters; ~230 checks in the file) except admin's and the
// first test's: those check at the production parameters (hashPassword).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hash as argon2Hash, type Algorithm } from '@node-rs/argon2';
import { Hono } from 'hono';
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../db/index.ts';
import { seedDatabase } from '../../../test/helpers/database-template.ts';
import { createAuditRepository } from '../repositories/audit.ts';
import { createSessionsRepository } from '../repositories/sessions.ts';
import { createUsersRepository } from '../repositories/users.ts';
import { authRoutes } from '../routes/auth.ts';
import type { AppEnv } from '../routes/env.ts';
import { errorHandler } from '../routes/errors.ts';
import { clientAddress } from '../routes/middleware.ts';
import { createAuditService } from './audit.ts';
import { authPolicy, createAuthService, verifyPassword } from './auth.ts';
import { createUsersService } from './users.ts';

const PASSWORD = 'correct horse battery staple';
const log = pino({ level: 'silent' });
let dir: string;
let database: OpenDatabase;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'keel-auth-test-'));
  await seedDatabase(dir); // a copy of a migrated empty database: no initdb
  database = await openDatabase({ dataDir: dir });
  const audit = createAuditService({ audit: createAuditRepository(database.db), log });
  const users = createUsersService({ users: createUsersRepository(database.db), audit });
  for (const username of ['admin', 'erin', 'owner']) {
    const user = await users.create({ username, password: PASSWORD, role: 'admin', actor: 'system' });
    if (username !== 'admin')
      await createUsersRepository(database.db).setPasswordHash(user.id, await cheapHash(PASSWORD));
  }
});
after(async () => {
  await database.close();
  rmSync(dir, { recursive: true, force: true });
});

/** argon2id at a low cost (what the service's verification reads from the hash). */
function cheapHash(password: string): Promise<string> {
  return argon2Hash(password, { algorithm: 2 as Algorithm, memoryCost: 64, timeCost: 1, parallelism: 1 });
}

/**
 * A sign-in endpoint on its own throttle state, with a controlled clock and counted checks;
 * unknown names are checked against a low-cost hash unless `production`.
 */
function signIn(policy: Partial<typeof authPolicy> = {}, { production = false } = {}) {
  let clock = Date.parse('2026-03-02T09:00:00Z');
  const checks = { total: 0, running: 0, most: 0 };
  // While held, checks wait for release(): a burst is all in before any check ends, however
  // busy the machine, so the counts below do not depend on timing.
  let gate: Promise<void> | null = null;
  let open = () => {};
  const auth = createAuthService({
    users: createUsersRepository(database.db),
    sessions: createSessionsRepository(database.db),
    audit: createAuditService({ audit: createAuditRepository(database.db), log }),
    log,
    now: () => new Date(clock),
    policy,
    ...(production ? {} : { hashPassword: cheapHash }),
    checkPassword: async (hash, password) => {
      checks.total++;
      checks.running++;
      checks.most = Math.max(checks.most, checks.running);
      try {
        await gate;
        return await verifyPassword(hash, password);
      } finally {
        checks.running--;
      }
    },
  });
  const app = new Hono<AppEnv>();
  app.onError(errorHandler(log));
  app.use('*', clientAddress({ trustProxy: false }));
  app.route('/auth', authRoutes({ auth, cookie: { publicUrl: 'http://keel.test', trustProxy: false } }));
  async function login(username: string, password: string, ip = '198.51.100.7') {
    const res = await app.request(
      'http://keel.test/auth/login',
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
      },
      { incoming: { socket: { remoteAddress: ip, remotePort: 40000 } } },
    );
    const body = (await res.json()) as { error?: { code: string } };
    return { status: res.status, retryAfter: res.headers.get('retry-after'), code: body.error?.code };
  }
  /** Sends all `attempts` at once, holding the checks until every other attempt was answered. */
  async function burst(attempts: [username: string, password: string, ip?: string][], checked: number) {
    gate = new Promise<void>((resolve) => (open = resolve));
    let answered = 0;
    const results = attempts.map(async ([u, p, ip]) => {
      const r = await login(u, p, ip);
      if (++answered === attempts.length - checked) open();
      return r;
    });
    const all = await Promise.all(results);
    gate = null;
    return all;
  }
  return {
    login,
    burst,
    checks,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

const lockoutSeconds = String(authPolicy.lockoutMs / 1000);

describe('sign-in throttling', () => {
  test('200 concurrent wrong passwords: one check at a time, five in the window, then locked; the right password after the window works', async () => {
    const s = signIn({}, { production: true });
    const burst = await s.burst(
      Array.from({ length: 200 }, (_, i) => ['admin', `guess-${i}`] as [string, string]),
      1,
    );
    assert.equal(s.checks.total, 1, 'password checks for a burst of 200 on one name');
    assert.equal(burst.filter((r) => r.status === 401).length, 1);
    for (const r of burst.filter((r) => r.status !== 401)) {
      assert.equal(r.status, 429);
      assert.equal(r.code, 'auth.locked');
      assert.equal(r.retryAfter, '1');
    }
    // The burst over, the name has 4 failures left in its window; bursts can only use those.
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 50 }, (_, i) => s.login('admin', `guess-${round}-${i}`)));
    }
    assert.equal(s.checks.total, authPolicy.maxFailuresPerUser);
    // Locked: even the right password, from an address the user never used, is refused unchecked.
    const locked = await s.login('admin', PASSWORD, '203.0.113.50');
    assert.equal(locked.status, 429);
    assert.equal(locked.retryAfter, lockoutSeconds);
    assert.equal(s.checks.total, authPolicy.maxFailuresPerUser);
    s.advance(authPolicy.lockoutMs - 1000);
    assert.equal((await s.login('admin', PASSWORD, '203.0.113.50')).retryAfter, '1');
    s.advance(1000);
    assert.equal((await s.login('admin', PASSWORD, '203.0.113.50')).status, 200);
  });

  test('200 concurrent attempts from 200 addresses: still one check at a time and five per window', async () => {
    const s = signIn();
    for (let round = 0; round < 6; round++) {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => s.login('erin', 'wrong', `10.${round}.${i >> 8}.${i & 255}`)),
      );
    }
    assert.equal(s.checks.total, authPolicy.maxFailuresPerUser);
    assert.equal(s.checks.most, 1);
  });

  test('existing and unknown usernames get the same answers, windows and Retry-After', async () => {
    const answers: string[][] = [];
    for (const username of ['erin', 'nobody-here']) {
      const s = signIn();
      const seen: string[] = [];
      for (let i = 0; i < 7; i++) {
        const r = await s.login(username, 'wrong', `192.0.2.${i}`);
        seen.push(`${r.status} ${r.code} ${r.retryAfter}`);
      }
      s.advance(authPolicy.lockoutMs);
      const r = await s.login(username, 'wrong', '192.0.2.99');
      seen.push(`${r.status} ${r.code} ${r.retryAfter}`);
      answers.push(seen);
    }
    assert.deepEqual(answers[0], answers[1]);
    assert.deepEqual(answers[0]!.slice(4, 7), [
      '401 auth.invalid_credentials null',
      `429 auth.locked ${lockoutSeconds}`,
      `429 auth.locked ${lockoutSeconds}`,
    ]);
    assert.equal(answers[0]![7], '401 auth.invalid_credentials null');
  });

  test('strangers failing on a name do not lock its owner out of an address they signed in from', async () => {
    const s = signIn();
    const home = '192.0.2.200';
    assert.equal((await s.login('owner', PASSWORD, home)).status, 200);
    for (let lock = 0; lock < 3; lock++) {
      for (let i = 0; i < 6; i++) await s.login('owner', 'wrong', `203.0.113.${lock * 10 + i}`);
      assert.equal(
        (await s.login('owner', PASSWORD, '203.0.113.99')).status,
        429,
        'a new address is locked out',
      );
      assert.equal((await s.login('owner', PASSWORD, home)).status, 200, 'the owner, from home, is not');
      s.advance(authPolicy.lockoutMs);
    }
  });

  test('spraying more names than the throttle table holds does not unlock a locked name', async () => {
    const s = signIn({ throttleEntries: 20 });
    for (let i = 0; i < 5; i++) await s.login('admin', 'wrong', `10.7.0.${i}`);
    assert.equal((await s.login('admin', PASSWORD, '10.7.1.1')).status, 429);
    for (let i = 0; i < 60; i++) await s.login(`spray-${i}`, 'wrong', `10.7.2.${i}`);
    assert.equal((await s.login('admin', PASSWORD, '10.7.1.2')).status, 429, 'the lock was evicted');
  });

  test('at most 8 password checks run at once in all (and 4 per address)', async () => {
    const s = signIn();
    const many = await s.burst(
      Array.from(
        { length: 100 },
        (_, i) => [`user-${i}`, 'wrong', `10.9.${i}.1`] as [string, string, string],
      ),
      authPolicy.maxChecksInFlight,
    );
    assert.ok(s.checks.most <= authPolicy.maxChecksInFlight, `${s.checks.most} at once`);
    assert.equal(s.checks.total, authPolicy.maxChecksInFlight);
    assert.equal(many.filter((r) => r.status === 429 && r.retryAfter === '1').length, 100 - 8);
    const one = signIn();
    await one.burst(
      Array.from({ length: 20 }, (_, i) => [`name-${i}`, 'wrong', '10.8.0.1'] as [string, string, string]),
      authPolicy.maxChecksInFlightPerAddress,
    );
    assert.equal(one.checks.total, authPolicy.maxChecksInFlightPerAddress);
  });

  test('50 addresses spraying 60 names: each address is cut off at its budget, existing names look like unknown ones, the owner signs in after the window', async () => {
    // A smaller per-address budget keeps the password checks (real argon2) few; the rule is the same.
    // 2 (100 checks; it was 4: 200): every address still ends locked (2 refusals, then 4 locked);
    // erin (index 7: the 2nd attempt of five addresses) still takes five checked failures, and
    // admin (index 10: the 5th attempt of five addresses) still comes after their budgets.
    const perAddress = 2;
    const s = signIn({ maxFailuresPerIp: perAddress });
    const names = Array.from({ length: 60 }, (_, i) =>
      i === 7 ? 'erin' : i === 10 ? 'admin' : `nobody-${i}`,
    );
    const answers = new Map<string, string[]>();
    const byName = new Map<string, string[]>();
    for (let a = 0; a < 50; a++) {
      const ip = `10.50.${a}.1`;
      const seen: string[] = [];
      for (let k = 0; k < 6; k++) {
        const name = names[(a * 6 + k) % names.length]!;
        const r = await s.login(name, `spray-${a}-${k}`, ip);
        const answer = `${r.status} ${r.code} ${r.retryAfter === null ? '-' : 'retry'}`;
        seen.push(answer);
        byName.set(name, [...(byName.get(name) ?? []), answer]);
      }
      answers.set(ip, seen);
    }
    // Every address got the same answers, whichever names it hit: its budget, then locked.
    const expected = [
      ...Array<string>(perAddress).fill('401 auth.invalid_credentials -'),
      ...Array<string>(6 - perAddress).fill('429 auth.locked retry'),
    ];
    for (const [ip, seen] of answers) assert.deepEqual(seen, expected, ip);
    assert.equal(s.checks.total, 50 * perAddress, 'password checks in all');
    // A name's answers depend only on where it fell in the spray, never on whether it exists:
    // erin (index 7) like nobody-1 and nobody-13, admin (index 10) like nobody-4.
    assert.deepEqual(byName.get('erin'), byName.get('nobody-1'));
    assert.deepEqual(byName.get('erin'), byName.get('nobody-13'));
    assert.deepEqual(byName.get('admin'), byName.get('nobody-4'));
    // erin's name took five failures and is locked like any name; admin's spray attempts all came
    // after their addresses' budgets, so admin signs in at once from a fresh address.
    assert.equal((await s.login('erin', PASSWORD, '203.0.113.77')).status, 429);
    assert.equal((await s.login('admin', PASSWORD, '203.0.113.78')).status, 200);
    assert.equal((await s.login('admin', PASSWORD, '10.50.5.1')).status, 429, 'a sprayed address');
    s.advance(authPolicy.lockoutMs);
    assert.equal((await s.login('erin', PASSWORD, '203.0.113.77')).status, 200, 'after the window');
    assert.equal(
      (await s.login('admin', PASSWORD, '10.50.5.1')).status,
      200,
      'the address, after its window',
    );
  });
});
