// The fleet as the console sees it: the host list from GET /hosts kept current by the
// Server-Sent Events stream GET /events (`event: host`, data = Host), shared by every page. Every
// host comes through the client boundary (host.ts), so whatever the database holds renders. The
// stream follows the user's access: `access` (the hosts they may see changed) reloads the list,
// `closed` (session ended, or no host may be seen any more) stops the stream for good and reloads,
// which sends a signed-out user to the sign-in page.
import { api, API_BASE, ApiError } from './api.ts';
import { parseHost } from './host.ts';
import type { Host } from './types.ts';

/** Live-update link state, shown in the UI so a stale view never looks live. */
export type LinkState = 'connecting' | 'live' | 'reconnecting' | 'ended';

class Fleet {
  /** Hosts by id. */
  byId = $state<Record<string, Host>>({});
  /** True once the first host list has arrived. */
  loaded = $state(false);
  /** The last error loading the list, if any. */
  error = $state<string | null>(null);
  link = $state<LinkState>('connecting');

  #users = 0;
  #source: EventSource | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #retryDelay = 1000;
  #lostLink = false;
  /** Ids changed by the stream while a list request was in flight: the stream's copy is newer. */
  #touched: Set<string> | null = null;

  /** All hosts, sorted by name. */
  get hosts(): Host[] {
    return Object.values(this.byId).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  /** Insert or replace one host (from the stream or an action's answer). */
  upsert(host: Host): void {
    this.byId[host.id] = host;
    this.#touched?.add(host.id);
  }

  /** Fetch the full list, keeping any newer copies that arrived on the stream meanwhile. */
  async reload(): Promise<void> {
    const touched = new Set<string>();
    this.#touched = touched;
    try {
      const { hosts } = await api.listHosts();
      const next: Record<string, Host> = {};
      for (const h of hosts) next[h.id] = touched.has(h.id) ? (this.byId[h.id] ?? h) : h;
      for (const id of touched) if (!next[id] && this.byId[id]) next[id] = this.byId[id];
      this.byId = next;
      this.error = null;
    } catch (err) {
      this.error = err instanceof ApiError ? err.message : String(err);
    } finally {
      if (this.#touched === touched) this.#touched = null;
      this.loaded = true;
    }
  }

  /**
   * Start live updates for a page; returns the function that stops them.
   * Several pages may hold the stream at once; it closes when the last one lets go.
   */
  connect(): () => void {
    this.#users++;
    if (this.#users === 1) {
      this.#open();
      void this.reload();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#users--;
      if (this.#users === 0) this.#close();
    };
  }

  #open(): void {
    this.link = this.#lostLink ? 'reconnecting' : 'connecting';
    const source = new EventSource(`${API_BASE}/events`, { withCredentials: true });
    this.#source = source;
    source.addEventListener('open', () => {
      this.link = 'live';
      this.#retryDelay = 1000;
      // Events sent while we were away are gone: resynchronise from the list.
      if (this.#lostLink) void this.reload();
      this.#lostLink = false;
    });
    source.addEventListener('host', (ev) => {
      try {
        const host = parseHost(JSON.parse((ev as MessageEvent<string>).data));
        if (host) this.upsert(host);
      } catch {
        // A malformed event is dropped; the next list reload corrects the view.
      }
    });
    source.addEventListener('host.removed', (ev) => {
      try {
        const { id } = JSON.parse((ev as MessageEvent<string>).data) as { id?: unknown };
        if (typeof id === 'string') {
          delete this.byId[id];
          this.#touched?.delete(id);
        }
      } catch {
        // As above: the next reload corrects the view.
      }
    });
    // The hosts this user may see changed (a grant, a group, their role): the list says which.
    source.addEventListener('access', () => void this.reload());
    // The server ended the stream on purpose: do not reconnect on our own.
    source.addEventListener('closed', () => {
      source.close();
      if (this.#source === source) this.#source = null;
      this.link = 'ended';
      // Nothing shown may outlive the access that allowed it; the reload shows what is left.
      this.byId = {};
      void this.reload();
    });
    source.addEventListener('error', () => {
      this.#lostLink = true;
      this.link = 'reconnecting';
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 401 or 5xx): retry ourselves with backoff. The list reload
        // also surfaces an expired session, which sends the user to the sign-in page.
        this.#source = null;
        const delay = this.#retryDelay * (0.75 + Math.random() * 0.5);
        this.#retryDelay = Math.min(this.#retryDelay * 2, 30_000);
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = null;
          if (this.#users > 0) {
            void this.reload();
            this.#open();
          }
        }, delay);
      }
    });
  }

  #close(): void {
    this.#source?.close();
    this.#source = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#lostLink = false;
  }

  /** Forget everything (on logout). */
  reset(): void {
    this.#close();
    this.byId = {};
    this.loaded = false;
    this.error = null;
  }
}

/** The console's one fleet view. */
export const fleet = new Fleet();
