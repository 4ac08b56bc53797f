// Proves the join token routes: an admin gets the secret and an enroll command with --pin once,
// only a hash reaches the database (and never the log or the audit trail), listing shows no
// secrets, deletion works and is audited, and lower roles are refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openTestApp, TEST_FINGERPRINT, type SignedIn, type TestApp } from '../app-fixture.ts';
import { hashJoinTokenSecret } from '../repositories/join-tokens.ts';

let t: TestApp;
let admin: SignedIn;
let operator: SignedIn;

before(async () => {
  t = await openTestApp({ publicUrl: 'https://keel.example.com' });
  admin = await t.signInAs('admin');
  operator = await t.signInAs('operator');
});
after(async () => {
  await t.close();
});

/** Every row of a table as one JSON string, to search for a value in any column. */
async function dump(table: string): Promise<string> {
  const result = (await t.db.execute(sql.raw(`select * from ${table}`))) as unknown as
    { rows: unknown[] } | unknown[];
  return JSON.stringify(Array.isArray(result) ? result : result.rows);
}

describe('join tokens', () => {
  test('POST creates a token: 201 with the secret and an enroll command pinning the controller key', async () => {
    const res = await t.request('/api/v1/join-tokens', {
      method: 'POST',
      as: admin,
      json: { ttlSeconds: 600, uses: 2, note: 'rack 3' },
    });
    assert.equal(res.status, 201);
    const body = (await res.json()) as {
      token: { id: string; note: string; usesLeft: number; expiresAt: string; createdAt: string };
      secret: string;
      command: string;
      enrollCommand: string;
      requirements: string;
    };
    assert.equal(body.token.note, 'rack 3');
    assert.equal(body.token.usesLeft, 2);
    const ttl = Date.parse(body.token.expiresAt) - Date.parse(body.token.createdAt);
    assert.equal(ttl, 600_000);
    assert.equal(
      body.command,
      `curl -fsSL https://keel.example.com/install.sh | KEEL_JOIN_TOKEN=${body.secret} sh -s -- agent --controller https://keel.example.com --pin ${TEST_FINGERPRINT}`,
    );
    assert.equal(
      body.enrollCommand,
      `KEEL_JOIN_TOKEN=${body.secret} keel-agent enroll --controller https://keel.example.com --pin ${TEST_FINGERPRINT} && keel-agent run`,
    );
    assert.match(body.requirements, /Node\.js 20\.19/);
    assert.match(body.requirements, /keel-agent/);

    // Stored hashed: the secret is nowhere in the database, its hash is.
    const tokens = await dump('join_tokens');
    assert.ok(!tokens.includes(body.secret), 'secret stored in join_tokens');
    assert.ok(tokens.includes(hashJoinTokenSecret(body.secret)));
    assert.ok(!(await dump('audit_log')).includes(body.secret), 'secret in the audit log');
    assert.ok(!t.logLines.join('').includes(body.secret), 'secret in the log');

    const audit = await dump('audit_log');
    assert.match(audit, /join_token\.create/);
  });

  test('an empty body uses the defaults (1 use, 3600 s)', async () => {
    const res = await t.request('/api/v1/join-tokens', { method: 'POST', as: admin });
    assert.equal(res.status, 201);
    const { token } = (await res.json()) as {
      token: { usesLeft: number; expiresAt: string; createdAt: string };
    };
    assert.equal(token.usesLeft, 1);
    assert.equal(Date.parse(token.expiresAt) - Date.parse(token.createdAt), 3_600_000);
  });

  test('bad input is 400 request.invalid', async () => {
    for (const json of [{ ttlSeconds: 1 }, { uses: 0 }, { note: 'x'.repeat(500) }, { extra: true }]) {
      const res = await t.request('/api/v1/join-tokens', { method: 'POST', as: admin, json });
      assert.equal(res.status, 400, JSON.stringify(json));
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'request.invalid');
    }
  });

  test('GET lists tokens without secrets; operators may read but not create or delete', async () => {
    const res = await t.request('/api/v1/join-tokens', { as: operator });
    assert.equal(res.status, 200);
    const { tokens } = (await res.json()) as { tokens: Record<string, unknown>[] };
    assert.ok(tokens.length >= 2);
    for (const token of tokens) {
      assert.ok(!('secret' in token) && !('secretHash' in token));
    }
    const create = await t.request('/api/v1/join-tokens', { method: 'POST', as: operator, json: {} });
    assert.equal(create.status, 403);
    const del = await t.request(`/api/v1/join-tokens/${tokens[0]!.id as string}`, {
      method: 'DELETE',
      as: operator,
    });
    assert.equal(del.status, 403);
  });

  test('DELETE removes a token (204), audits it, and 404s the second time', async () => {
    const created = await t.request('/api/v1/join-tokens', { method: 'POST', as: admin, json: {} });
    const { token } = (await created.json()) as { token: { id: string } };
    const res = await t.request(`/api/v1/join-tokens/${token.id}`, { method: 'DELETE', as: admin });
    assert.equal(res.status, 204);
    const again = await t.request(`/api/v1/join-tokens/${token.id}`, { method: 'DELETE', as: admin });
    assert.equal(again.status, 404);
    assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'join_token.not_found');
    assert.match(
      await dump('audit_log'),
      new RegExp(`join_token\\.delete.*join_token:${token.id}|join_token:${token.id}.*join_token\\.delete`),
    );
  });
});
