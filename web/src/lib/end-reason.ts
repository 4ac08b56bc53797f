// Plain wording for why a channel session (a terminal recording) ended. The controller stores and
// the API returns the end reason as the relay produced it ("client closed the channel"), which
// scripts and tests match on; the console shows users what happened in their words instead.
// Reasons it does not know (an agent's own message, an error text) are shown as they are.

/** The note the controller appends to a recording that reached its size cap. */
const CAPPED_NOTE = ' (the recording stopped at its size cap)';

/** Stored reasons and what they mean to the person who had the session open. */
const PLAIN: Record<string, string> = {
  // The browser's WebSocket closed: the tab or the terminal was closed, or its connection dropped.
  'client closed the channel': 'closed in the browser (or its connection dropped)',
  'idle timeout': 'closed after being idle too long',
  'agent disconnected': 'the host’s agent disconnected',
  'controller shutting down': 'the Keel server shut down',
};

/**
 * A stored end reason as users should read it; null or empty reads "—".
 *
 * @example describeEndReason('client closed the channel') // 'closed in the browser (or its connection dropped)'
 */
export function describeEndReason(reason: string | null | undefined): string {
  if (!reason) return '—';
  const capped = reason.endsWith(CAPPED_NOTE);
  const base = capped ? reason.slice(0, -CAPPED_NOTE.length) : reason;
  return `${PLAIN[base] ?? base}${capped ? CAPPED_NOTE : ''}`;
}
