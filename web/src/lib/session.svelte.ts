// The signed-in user and the session's CSRF token, kept in runes so every component sees changes.
import type { SessionInfo, User } from './types.ts';

class SessionState {
  user = $state<User | null>(null);
  csrfToken = $state<string | null>(null);

  /** Store what login or GET /auth/session returned. */
  set(info: SessionInfo): void {
    this.user = info.user;
    this.csrfToken = info.csrfToken;
  }

  /** Forget the session (after logout or when the controller says it is gone). */
  clear(): void {
    this.user = null;
    this.csrfToken = null;
  }
}

/** The console's one session. */
export const session = new SessionState();
