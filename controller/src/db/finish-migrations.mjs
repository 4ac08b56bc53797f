// Appends to the freshly generated init migration the statements drizzle-kit cannot express
// (column storage modes). Run by `npm run db:generate` right after `drizzle-kit generate`, so
// regenerating the migration from scratch keeps them.
import { readdirSync, appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const folder = fileURLToPath(new URL('../../drizzle/', import.meta.url));

/** Chunk bodies arrive compressed: keep them out of line and stop PostgreSQL compressing again. */
const extra = ['ALTER TABLE "stream_chunks" ALTER COLUMN "data" SET STORAGE EXTERNAL;'];

const init = readdirSync(folder).find((f) => /^0000_.*\.sql$/.test(f));
if (!init) throw new Error(`no 0000_*.sql migration in ${folder}`);
const file = path.join(folder, init);
const text = readFileSync(file, 'utf8');
const missing = extra.filter((s) => !text.includes(s));
if (missing.length > 0) {
  appendFileSync(file, missing.map((s) => `--> statement-breakpoint\n${s}`).join('\n') + '\n');
}
console.log(`${path.relative(process.cwd(), file)}: ${missing.length} storage statement(s) appended`);
