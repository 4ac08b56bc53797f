// Generates the controller's next migration (`npm run db:generate -w controller [-- --name x]`):
// `drizzle-kit generate` diffs the schema against the last committed snapshot and writes
// `drizzle/NNNN_<name>.sql`. Committed migrations are never rewritten: a database that applied
// one (every data dir made by an earlier release) is carried forward by the next ones. Then this
// script appends to the new file what drizzle-kit cannot express (column storage modes) for
// tables it creates.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const folder = path.join(root, 'drizzle');

/** Storage statements per table, appended to the migration that creates the table. */
const extra = {
  stream_chunks: 'ALTER TABLE "stream_chunks" ALTER COLUMN "data" SET STORAGE EXTERNAL;',
};

const nameArg = process.argv.indexOf('--name');
const name = nameArg > 0 ? process.argv[nameArg + 1] : 'schema';
const sqlFiles = () => readdirSync(folder).filter((f) => /^\d{4}_.*\.sql$/.test(f));
const before = new Set(sqlFiles());
execFileSync('npx', ['drizzle-kit', 'generate', '--name', name], { cwd: root, stdio: 'inherit' });

const added = sqlFiles().filter((f) => !before.has(f));
if (added.length === 0) {
  console.log('schema unchanged: no migration written');
} else {
  for (const file of added) {
    const full = path.join(folder, file);
    const text = readFileSync(full, 'utf8');
    const missing = Object.entries(extra)
      .filter(([table, s]) => text.includes(`CREATE TABLE "${table}"`) && !text.includes(s))
      .map(([, s]) => s);
    if (missing.length > 0) {
      writeFileSync(full, text + missing.map((s) => `--> statement-breakpoint\n${s}`).join('\n') + '\n');
    }
    console.log(`drizzle/${file}: written, ${missing.length} storage statement(s) appended`);
  }
}
