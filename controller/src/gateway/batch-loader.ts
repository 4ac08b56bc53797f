// Coalesces single-key lookups into batch queries: keys gather for a short linger, and while one
// batch is in flight new keys wait and go out together in the next. A burst of agents
// reconnecting (a controller restart) then costs a few queries instead of one per agent.

/** A batch lookup that did not answer in time (its query may still be running). */
export class BatchTimeout extends Error {
  constructor(ms: number) {
    super(`batch lookup did not answer within ${ms} ms`);
    this.name = 'BatchTimeout';
  }
}

type Waiter<V> = { resolve(value: V | undefined): void; reject(err: unknown): void };

/** Loads values by key through a batch function, one batch in flight at a time. */
export class BatchLoader<K, V> {
  #pending = new Map<K, Waiter<V>[]>();
  #running = false;
  #loadMany: (keys: K[]) => Promise<Map<K, V>>;
  #maxBatch: number;
  #lingerMs: number;
  #timeoutMs: number;
  /** A timed-out batch's query is still running. */
  #abandoned = false;

  /**
   * `lingerMs`: how long the first key of a batch waits for others (0: until the current event
   * loop turn ends). A few milliseconds turn a reconnect storm into batches of dozens.
   * `timeoutMs`: a batch that has not answered by then fails its waiters with BatchTimeout, so a
   * stalled query cannot hold up later lookups forever; while it is still running, later batches
   * fail at once with BatchTimeout instead of piling more queries onto a store that is not answering.
   */
  constructor(
    loadMany: (keys: K[]) => Promise<Map<K, V>>,
    opts: { maxBatch?: number; lingerMs?: number; timeoutMs?: number } = {},
  ) {
    this.#loadMany = loadMany;
    this.#maxBatch = opts.maxBatch ?? 500;
    this.#lingerMs = opts.lingerMs ?? 0;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Resolves with the value for `key`, or undefined when the batch function has none. */
  load(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiters = this.#pending.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.#pending.set(key, [{ resolve, reject }]);
      if (!this.#running) {
        this.#running = true;
        if (this.#lingerMs > 0) setTimeout(() => void this.#drain(), this.#lingerMs);
        else setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending.size > 0) {
      const batch = new Map<K, Waiter<V>[]>();
      for (const [key, waiters] of this.#pending) {
        batch.set(key, waiters);
        this.#pending.delete(key);
        if (batch.size >= this.#maxBatch) break;
      }
      if (this.#abandoned) {
        // A batch that timed out is still running: the store is not answering. Fail fast rather
        // than pile more queries onto it (at most one abandoned query per loader).
        const err = new BatchTimeout(this.#timeoutMs);
        for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
        continue;
      }
      let timer: NodeJS.Timeout | undefined;
      const keys = [...batch.keys()];
      // Through then(): a batch function that throws synchronously rejects like one that fails later.
      const query = Promise.resolve().then(() => this.#loadMany(keys));
      try {
        const values = await Promise.race([
          query,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              const settled = () => {
                this.#abandoned = false;
              };
              this.#abandoned = true;
              query.then(settled, settled);
              reject(new BatchTimeout(this.#timeoutMs));
            }, this.#timeoutMs);
          }),
        ]);
        for (const [key, waiters] of batch) for (const w of waiters) w.resolve(values.get(key));
      } catch (err) {
        for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
      } finally {
        clearTimeout(timer);
      }
      // Let the next batch gather too, unless it is already full.
      if (this.#lingerMs > 0 && this.#pending.size > 0 && this.#pending.size < this.#maxBatch) {
        await new Promise((resolve) => setTimeout(resolve, this.#lingerMs));
      }
    }
    this.#running = false;
  }
}
