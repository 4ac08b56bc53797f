// Reading PostgreSQL errors the same way from both drivers: drizzle wraps driver errors in a
// DrizzleQueryError whose `cause` is the PGlite or postgres.js error carrying the SQLSTATE `code`.

/** SQLSTATE codes the repositories react to. */
export const sqlState = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  invalidTextRepresentation: '22P02',
} as const;

/** The SQLSTATE of a database error (searching wrapped causes), or undefined. */
export function pgErrorCode(err: unknown): string | undefined {
  for (
    let e = err, depth = 0;
    e && typeof e === 'object' && depth < 5;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `id` can be compared with a uuid column (anything else would make PostgreSQL throw). */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}
