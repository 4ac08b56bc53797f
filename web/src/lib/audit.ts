// How the audit page reads a row: who acted (a user, an agent, the system), what it was about
// (a host links to its page) and the detail as one compact line.

/** The action families the audit page filters by (`value` is the API's action prefix). */
export const AUDIT_FAMILIES = [
  { value: '', label: 'All actions' },
  { value: 'auth.', label: 'Sign-in (auth.*)' },
  { value: 'host.', label: 'Hosts (host.*)' },
  { value: 'join_token.', label: 'Join tokens (join_token.*)' },
  { value: 'user.', label: 'Users (user.*)' },
] as const;

/** Who acted: a user (by name, or by id when the name is gone), an agent, or the controller itself. */
export type AuditActor =
  { kind: 'user'; name: string | null; id: string } | { kind: 'agent'; hostId: string } | { kind: 'system' };

/** Reads an entry's `actor` (`<userId>`, `agent:<hostId>` or `system`) with its `actorName`. */
export function auditActor(actor: string, actorName: string | null): AuditActor {
  if (actor === 'system') return { kind: 'system' };
  if (actor.startsWith('agent:')) return { kind: 'agent', hostId: actor.slice('agent:'.length) };
  return { kind: 'user', name: actorName, id: actor };
}

/** An entry's `target` split at the first colon: `host:<id>` -> { kind: 'host', id }. */
export function auditTarget(target: string | null): { kind: string; id: string } | null {
  if (!target) return null;
  const colon = target.indexOf(':');
  if (colon <= 0) return { kind: '', id: target };
  return { kind: target.slice(0, colon), id: target.slice(colon + 1) };
}

/** A long id cut to its first 8 characters for tight columns (the full id goes in a title). */
export function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

/** Whitespace, `=`, quotes, control and bidi-override characters: a bare value could mislead. */
const NEEDS_QUOTES = /[\s="'\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/**
 * The detail object as `key=value` pairs on one line. Plain strings go bare; a string that could
 * pass for more pairs or reorder the line (`x  reason=ok`, bidi controls: values such as the
 * username of a failed sign-in come from anyone) is JSON-quoted, with controls escaped; other
 * values are JSON.
 */
export function auditDetail(detail: Record<string, unknown> | null | undefined): string {
  if (!detail) return '';
  return Object.entries(detail)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !NEEDS_QUOTES.test(v) ? v : quote(v)}`)
    .join('  ');
}

function quote(v: unknown): string {
  // JSON escapes C0 controls; escape the C1 and bidi ones too so they cannot act on the line.
  return JSON.stringify(v).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
