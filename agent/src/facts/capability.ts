// The facts capability: serves `facts.refresh`, reports facts after every welcome and whenever
// they change (checked every minute), and records `facts.changed` events.
import type { HostFacts } from '@keel/shared';
import type { AgentCapability, CapabilityContext } from '../capabilities.ts';
import { collectFacts, factsChanged } from './index.ts';

/** How often facts that change on their own (disks, kernel, hostname) are checked. */
const CHECK_MS = 60_000;

export function factsCapability(opts: { checkMs?: number; collect?: () => Promise<HostFacts> } = {}) {
  const collect = opts.collect ?? collectFacts;
  let ctx: CapabilityContext | null = null;
  let last: HostFacts | null = null;
  let timer: NodeJS.Timeout | null = null;

  /** Fresh facts; a change since the last reading is recorded as a facts.changed event. */
  const current = async (): Promise<HostFacts> => {
    const next = await collect();
    const changed = last ? factsChanged(last, next) : [];
    if (changed.length > 0) ctx?.emit('facts.changed', { changed });
    last = next;
    return next;
  };

  return {
    name: 'facts',
    requests: {
      'facts.refresh': async () => ({ facts: await current() }),
    },
    async start(c) {
      ctx = c;
      last = await collect();
      c.onSession(() => {
        current().then(
          (facts) => c.send({ type: 'facts', facts }),
          (err: unknown) => c.log.warn({ err }, 'collecting facts failed'),
        );
      });
      // Facts that change on their own (disks filling, a kernel upgrade before reboot, hostname)
      // are noticed within a minute and reported at once.
      timer = setInterval(() => {
        const before = last;
        current().then(
          (next) => {
            if (before && factsChanged(before, next).length > 0) c.send({ type: 'facts', facts: next });
          },
          (err: unknown) => c.log.warn({ err }, 'collecting facts failed'),
        );
      }, opts.checkMs ?? CHECK_MS);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  } satisfies AgentCapability;
}
