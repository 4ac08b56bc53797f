// drizzle-kit configuration: reads the schema and writes SQL migrations to ./drizzle, which are
// committed and applied at controller start. Regenerate with `npm run db:generate -w controller`.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema/index.ts',
  out: './drizzle',
});
