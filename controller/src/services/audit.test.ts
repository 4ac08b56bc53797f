// Proves the audit trail is a hash chain that never forks: concurrent records from two service
// instances (as from two replicas) form one chain that verifies, and editing, deleting or
// re-linking a row is detected; with the head anchored outside the database, deleting the newest
// rows or all of them is detected too, also after new rows were appended since.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../db/index.ts';
import { seedDatabase } from '../../../test/helpers/database-template.ts';
import { AUDIT_GENESIS_HASH, createAuditRepository } from '../repositories/audit.ts';
import { fileAuditAnchor, memoryAuditAnchor } from './audit-anchor.ts';
import { auditRowHash, canonicalJson, createAuditService } from './audit.ts';

let dir: string;
let database: OpenDatabase;
const log = pino({ level: 'silent' });

before(
  async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'keel-audit-test-'));
    await seedDatabase(dir); // a copy of a migrated empty database: no initdb
    database = await openDatabase({ dataDir: dir });
  },
  { timeout: 180_000 },
);
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
    assert.deepEqual(await audit.verify(), { ok: true, rows: 2, anchored: false });
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
    assert.deepEqual(await a.verify(), { ok: true, rows: 200, anchored: false });
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

describe('audit anchor (the head kept outside the database)', () => {
  async function anchoredTrail(rows: number) {
    await reset();
    const anchor = fileAuditAnchor(mkdtempSync(path.join(dir, 'anchor-')));
    const audit = createAuditService({ audit: createAuditRepository(database.db), log, anchor });
    for (let i = 0; i < rows; i++) await audit.record('system', 'test.row', null, { i });
    return { anchor, audit };
  }

  test('the anchor file follows each append (id, hash, rows in the chain) and verify checks it', async () => {
    const { anchor, audit } = await anchoredTrail(3);
    await audit.flushAnchor();
    const state = anchor.read();
    const [newest] = await createAuditRepository(database.db).recent(1);
    assert.deepEqual(state, { head: { id: newest!.id, hash: newest!.hash, count: 3 } });
    assert.equal(statSync(anchor.where).mode & 0o777, 0o600);
    assert.deepEqual(await audit.verify(), { ok: true, rows: 3, anchored: true });
    // A fresh service (a restart) reads the anchor from the file.
    const again = createAuditService({ audit: createAuditRepository(database.db), log, anchor });
    assert.deepEqual(await again.verify(), { ok: true, rows: 3, anchored: true });
  });

  test('deleting the newest rows is detected, naming the anchored row', async () => {
    const { audit } = await anchoredTrail(5);
    await database.db.execute(sql`delete from audit_log where id >= 4`);
    const result = await audit.verify();
    assert.equal(result.ok, false);
    assert.ok(!result.ok);
    assert.equal(result.brokenAt, 5);
    assert.match(
      result.reason,
      /the newest rows were removed: .* names row 5 .* the chain ends at row 3 after 3 rows/,
    );
  });

  test('deleting every row is detected', async () => {
    const { audit } = await anchoredTrail(4);
    await database.db.execute(sql`delete from audit_log`);
    const result = await audit.verify();
    assert.ok(!result.ok);
    assert.equal(result.rows, 0);
    assert.match(result.reason, /every row was removed/);
  });

  test('still detected after new rows were appended on the shortened chain', async () => {
    const { audit } = await anchoredTrail(5);
    await database.db.execute(sql`delete from audit_log where id >= 4`);
    await audit.record('system', 'test.after', null, {});
    await audit.record('system', 'test.after', null, {});
    const result = await audit.verify();
    assert.ok(!result.ok);
    assert.equal(result.brokenAt, 5);
    assert.match(result.reason, /rows were removed: row 5 .* was gone when the next row was appended/);
  });

  test('rows appended by another writer (a replica) after our head keep the chain verified', async () => {
    const { audit } = await anchoredTrail(2);
    const other = createAuditService({
      audit: createAuditRepository(database.db),
      log,
      anchor: memoryAuditAnchor(),
    });
    await other.record('system', 'test.replica', null, {});
    await audit.record('system', 'test.row', null, {});
    assert.deepEqual(await audit.verify(), { ok: true, rows: 4, anchored: true });
    assert.deepEqual(await other.verify(), { ok: true, rows: 4, anchored: true });
  });
});
