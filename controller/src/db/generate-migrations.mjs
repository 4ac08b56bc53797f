// Regenerates the controller's migration from scratch (`npm run db:generate -w controller`):
// `rm -rf drizzle && drizzle-kit generate --name init`, then appends what drizzle-kit cannot
// express (column storage modes). While Keel is unreleased there is one init migration.
// When the resulting SQL is unchanged, the previous meta files are put back: drizzle's migrator
// re-applies a migration whose journal time is newer than the last one applied, so a fresh
// timestamp on identical SQL would break every existing database.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const folder = path.join(root, 'drizzle');

/** Chunk bodies arrive compressed: keep them out of line and stop PostgreSQL compressing again. */
const extra = ['ALTER TABLE "stream_chunks" ALTER COLUMN "data" SET STORAGE EXTERNAL;'];

/** Every file under drizzle/, relative path -> content. */
function snapshot() {
  const files = new Map();
  if (!existsSync(folder)) return files;
  for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath ?? entry.path, entry.name);
    files.set(path.relative(folder, file), readFileSync(file, 'utf8'));
  }
  return files;
}

const sqlOf = (files) =>
  [...files]
    .filter(([name]) => name.endsWith('.sql'))
    .sort()
    .map(([name, text]) => `${name}\n${text}`)
    .join('\n');

const before = snapshot();
rmSync(folder, { recursive: true, force: true });
execFileSync('npx', ['drizzle-kit', 'generate', '--name', 'init'], { cwd: root, stdio: 'inherit' });

const init = readdirSync(folder).find((f) => /^0000_.*\.sql$/.test(f));
if (!init) throw new Error(`no 0000_*.sql migration in ${folder}`);
const initFile = path.join(folder, init);
const text = readFileSync(initFile, 'utf8');
const missing = extra.filter((s) => !text.includes(s));
writeFileSync(initFile, text + missing.map((s) => `--> statement-breakpoint\n${s}`).join('\n') + '\n');

const after = snapshot();
if (before.size > 0 && sqlOf(before) === sqlOf(after)) {
  rmSync(folder, { recursive: true, force: true });
  for (const [name, content] of before) {
    const file = path.join(folder, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  console.log('schema unchanged: kept the existing migration and its journal');
} else {
  console.log(
    `${path.relative(root, initFile)}: regenerated, ${missing.length} storage statement(s) appended`,
  );
}
