// Proves the audit trail is a hash chain that never forks: concurrent records from two service
// instances (as from two replicas) form one chain that verifies, and editing, deleting or
// re-linking a row is detected.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../db/index.ts';
import { AUDIT_GENESIS_HASH, createAuditRepository } from '../repositories/audit.ts';
import { auditRowHash, canonicalJson, createAuditService } from './audit.ts';

let dir: string;
let database: OpenDatabase;
const log = pino({ level: 'silent' });

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'keel-audit-test-'));
  database = await openDatabase({ dataDir: dir });
});
after(async () => {
  await database.close();
  rmSync(dir, { recursive: true, force: true });
});

async function reset() {
  await database.db.execute(sql`truncate audit_log restart identity`);
}

describe('canonicalJson', () => {
  test('sorts keys at every level and drops undefined', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } }),
      '{"a":{"d":[{"y":2,"z":1}]},"b":1}',
    );
  });
});

describe('audit chain', () => {
  test('records link each row to the one before, from the genesis hash', async () => {
    await reset();
    const audit = createAuditService({ audit: createAuditRepository(database.db), log });
    const first = await audit.record('system', 'test.one', null, { n: 1 });
    const second = await audit.record(
      'user-1',
      'test.two',
      'host:x',
      { nested: { b: 2, a: 1 } },
      '192.0.2.1',
    );
    assert.equal(first.prevHash, AUDIT_GENESIS_HASH);
    assert.equal(second.prevHash, first.hash);
    assert.equal(second.hash, auditRowHash(first.hash, second));
    assert.deepEqual(await audit.verify(), { ok: true, rows: 2 });
  });

  test('200 concurrent records from two writers make one unforked chain', async () => {
    await reset();
    const repo = createAuditRepository(database.db);
    const a = createAuditService({ audit: repo, log });
    const b = createAuditService({ audit: repo, log });
    const rows = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).record('system', 'test.concurrent', null, { i })),
    );
    assert.equal(new Set(rows.map((r) => r.prevHash)).size, 200, 'two rows share a parent: the chain forked');
    assert.deepEqual(await a.verify(), { ok: true, rows: 200 });
  });

  test('detects an edited row', async () => {
    await reset();
    const audit = createAuditService({ audit: createAuditRepository(database.db), log });
    for (let i = 0; i < 5; i++) await audit.record('system', 'test.row', null, { i });
    await database.db.execute(sql`update audit_log set detail = '{"i": 99}' where id = 3`);
    const result = await audit.verify();
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.brokenAt === 3 && /content/.test(result.reason));
  });

  test('detects a deleted row', async () => {
    await reset();
    const audit = createAuditService({ audit: createAuditRepository(database.db), log });
    for (let i = 0; i < 5; i++) await audit.record('system', 'test.row', null, { i });
    await database.db.execute(sql`delete from audit_log where id = 2`);
    const result = await audit.verify();
    assert.ok(!result.ok && result.brokenAt === 3 && /prev_hash/.test(result.reason));
  });

  test('detects a row rewritten with a recomputed hash (later links break)', async () => {
    await reset();
    const audit = createAuditService({ audit: createAuditRepository(database.db), log });
    const rows = [];
    for (let i = 0; i < 4; i++) rows.push(await audit.record('system', 'test.row', null, { i }));
    const forged = { ...rows[1]!, actor: 'someone-else' };
    const forgedHash = auditRowHash(forged.prevHash, forged);
    await database.db.execute(
      sql`update audit_log set actor = 'someone-else', hash = ${forgedHash} where id = 2`,
    );
    const result = await audit.verify();
    assert.ok(!result.ok && result.brokenAt === 3);
  });
});
