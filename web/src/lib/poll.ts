// Polling a view's data: load now, then again a fixed time after each load ends (never two at
// once), until the caller stops it — the shape of a Svelte `$effect` cleanup.

/**
 * Calls `load(signal)` now and `intervalMs` after each call settles; `settled(err)` hears each
 * outcome (`null` on success), except after `stop`. Returns `stop`, which also aborts a call in
 * flight.
 *
 * @example $effect(() => poll((signal) => refresh(signal), 15_000, (err) => (error = err)));
 */
export function poll(
  load: (signal: AbortSignal) => Promise<void>,
  intervalMs: number,
  settled: (err: unknown) => void,
): () => void {
  const ctrl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    let failure: unknown = null;
    try {
      await load(ctrl.signal);
    } catch (err) {
      failure = err;
    }
    if (ctrl.signal.aborted) return;
    settled(failure);
    timer = setTimeout(() => void tick(), intervalMs);
  };
  void tick();
  return () => {
    ctrl.abort();
    clearTimeout(timer);
  };
}
