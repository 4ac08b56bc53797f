// Presence: hosts' online/offline state and facts, written in group commits. Changes gather for a
// short linger and go to the store in one transaction, so a burst of connects (a controller
// restart) costs a few commits, not one per host; the stored hosts are published afterwards.
import type { Logger } from 'pino';
import type { GatewayStore, PresenceChange } from './store.ts';
import type { HostView } from './types.ts';

/** How long presence changes gather before a group commit; online state shows this much later. */
const PRESENCE_LINGER_MS = 20;

export interface PresenceOptions {
  store: Pick<GatewayStore, 'applyPresence'>;
  log: Logger;
  /** Called with the hosts a group commit just stored. */
  onHostViews?: (hosts: HostView[]) => void;
}

/** The presence writer: `queue()` a change, `flush()` to wait until all queued ones are stored. */
export class PresenceWriter {
  #opts: PresenceOptions;
  /** Presence and facts waiting for the next group commit; the latest change per host wins. */
  #pending = new Map<string, PresenceChange>();
  #flushing: Promise<void> | null = null;
  /** Set at shutdown: batches no longer linger. */
  closing = false;

  constructor(opts: PresenceOptions) {
    this.#opts = opts;
  }

  /** Records a presence/facts change for the next group commit and starts one if idle. */
  queue(hostId: string, change: PresenceChange): void {
    const merged = { ...this.#pending.get(hostId), ...change };
    this.#pending.set(hostId, merged);
    // A short linger lets a burst of connects (a controller restart) share one commit.
    this.#flushing ??= new Promise((resolve) => setTimeout(resolve, PRESENCE_LINGER_MS)).then(() =>
      this.#flushLoop(),
    );
  }

  /** Resolves when every presence change queued so far is stored. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  /** Writes pending presence in batches, one transaction at a time, until none is left. */
  async #flushLoop(): Promise<void> {
    try {
      while (this.#pending.size > 0) {
        const started = Date.now();
        const batch = this.#pending;
        this.#pending = new Map();
        let views: HostView[];
        try {
          views = await this.#opts.store.applyPresence(batch, new Date());
        } catch (err) {
          // Nothing is dropped: the batch goes back under any newer changes and is retried, host
          // by host if need be, so one bad row cannot hold the whole fleet's presence hostage.
          this.#opts.log.error({ err, hosts: batch.size }, 'storing host presence failed; retrying');
          views = await this.#applyOneByOne(batch);
        }
        this.#opts.onHostViews?.(views);
        // The next batch gathers for a linger too, so a storm of connects shares few commits.
        const wait = PRESENCE_LINGER_MS - (Date.now() - started);
        if (this.#pending.size > 0 && wait > 0 && !this.closing) {
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  /** Stores a failed batch host by host; a host whose write still fails is retried later. */
  async #applyOneByOne(batch: Map<string, PresenceChange>): Promise<HostView[]> {
    const views: HostView[] = [];
    for (const [hostId, change] of batch) {
      try {
        views.push(...(await this.#opts.store.applyPresence(new Map([[hostId, change]]), new Date())));
      } catch (err) {
        this.#opts.log.error({ err, host: hostId }, 'storing this host presence failed; will retry');
        const newer = this.#pending.get(hostId);
        this.#pending.set(hostId, { ...change, ...newer });
        // Back off so a database outage does not spin.
        await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
      }
    }
    return views;
  }
}
