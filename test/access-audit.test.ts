// Proves the audit trail as an access tool: filtered by actor, exported as JSON lines and CSV
// (oldest first, filters applied, spreadsheet formulas defused, the export itself audited, admins
// only), and `keel-controller audit verify` exits 0 on an intact trail and 1 on a tampered one.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openTestApp, type SignedIn, type TestApp } from '../controller/src/app-fixture.ts';
import { auditCommand } from '../controller/src/cli/audit.ts';
import { csvCell } from '../controller/src/routes/audit.ts';

let t: TestApp;
let owner: SignedIn;
let viewer: SignedIn;

before(async () => {
  t = await openTestApp();
  owner = await t.signInAs('owner');
  viewer = await t.signInAs('viewer');
  // A few actions by the owner, one with a formula-looking name.
  for (const name of ['alpha', '=cmd|calc', 'gamma']) {
    const res = await t.request('/api/v1/groups', {
      method: 'POST',
      json: { name: name.replace(/[=|]/g, 'x') },
      as: owner,
    });
    assert.equal(res.status, 201);
  }
  await t.services.audit.record(owner.userId, 'test.formula', null, { note: '=HYPERLINK("x")' }, '192.0.2.9');
});
after(async () => {
  await t.close();
});

describe('audit', () => {
  test('the list filters by actor', async () => {
    const page = (await (await t.request(`/api/v1/audit?actor=${viewer.userId}`, { as: owner })).json()) as {
      entries: { actor: string; action: string }[];
    };
    assert.ok(page.entries.length >= 1);
    assert.ok(page.entries.every((e) => e.actor === viewer.userId));
    assert.ok(page.entries.some((e) => e.action === 'auth.login'));
  });

  test('JSON lines export: oldest first, filtered, one entry per line; the export is audited', async () => {
    const res = await t.request(`/api/v1/audit/export?actor=${owner.userId}&action=group.create`, {
      as: owner,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
    assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="keel-audit-.*\.jsonl"/);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: number; action: string });
    assert.equal(lines.length, 3);
    assert.ok(lines.every((l) => l.action === 'group.create'));
    assert.deepEqual(
      lines.map((l) => l.id),
      [...lines.map((l) => l.id)].sort((a, b) => a - b),
    );
    const audited = (await (await t.request('/api/v1/audit?action=audit.export', { as: owner })).json()) as {
      entries: { detail: { format: string } }[];
    };
    assert.equal(audited.entries[0]?.detail.format, 'jsonl');
  });

  test('CSV export: a header row, quoted cells, formulas defused', async () => {
    const res = await t.request('/api/v1/audit/export?format=csv&action=test.formula', { as: owner });
    assert.match(res.headers.get('content-type') ?? '', /text\/csv/);
    const text = await res.text();
    const [header, row] = text.split('\r\n');
    assert.equal(header, 'id,at,actor,actorName,action,target,ip,detail,hash');
    assert.ok(row?.includes('test.formula'));
    assert.ok(row?.includes('"{""note"":""=HYPERLINK(\\""x\\"")""}"'), row);
    assert.equal(csvCell('=1+1'), "'=1+1");
    assert.equal(csvCell('-2'), "'-2");
    assert.equal(csvCell('a,b'), '"a,b"');
    assert.equal(csvCell(null), '');
  });

  test('only audit readers export', async () => {
    assert.equal((await t.request('/api/v1/audit/export', { as: viewer })).status, 403);
  });

  test('keel-controller audit verify: 0 when intact, 1 after a row is changed, 2 on a usage error', async () => {
    const run = async (argv: string[]) => {
      const out = new PassThrough();
      let text = '';
      out.on('data', (d: Buffer) => (text += d.toString()));
      const code = await auditCommand(argv, {
        audit: t.services.audit,
        stdout: out,
        stderr: new PassThrough(),
      });
      return { code, text };
    };
    await t.services.audit.flushAnchor();
    const intact = await run(['verify']);
    assert.equal(intact.code, 0, intact.text);
    assert.match(intact.text, /intact/);
    await t.db.execute(
      sql`update audit_log set detail = '{"tampered":true}'::jsonb where action = 'test.formula'`,
    );
    const broken = await run(['verify', '--json']);
    assert.equal(broken.code, 1);
    assert.equal((JSON.parse(broken.text) as { ok: boolean }).ok, false);
    assert.equal((await run(['check'])).code, 2);
  });
});
