// The audit chain's anchor: where the chain's newest row is remembered outside the database. The
// hash chain alone shows an edited, inserted or removed row in the middle, but not the newest rows
// removed (the shorter chain is still a valid chain) nor the whole table emptied. So after every
// append this controller writes the head it just made (row id, hash, rows in the chain) to
// `<dataDir>/audit-head.json`, beside its key, where an edit of the database does not reach;
// verify checks that the table still holds that row with that hash at that position.
import { readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

/** The newest row this controller appended: its id, its hash and how many rows the chain had. */
export interface AuditHead {
  id: number;
  hash: string;
  count: number;
}

/** What the anchor holds. `missing` is the first anchored head found gone, kept until resolved. */
export interface AuditAnchorState {
  head: AuditHead;
  missing?: AuditHead & { detectedAt: string };
}

/** Where the audit head is kept. */
export interface AuditAnchor {
  /** Where it lives (for messages). */
  readonly where: string;
  read(): AuditAnchorState | null;
  write(state: AuditAnchorState): Promise<void>;
}

const headSchema = z.object({
  id: z.number().int().positive(),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  count: z.number().int().positive(),
});
const stateSchema = z.object({
  head: headSchema,
  missing: headSchema.extend({ detectedAt: z.string() }).optional(),
});

/** The anchor file in the controller's data dir (`audit-head.json`, 0600, replaced atomically). */
export function fileAuditAnchor(dataDir: string): AuditAnchor {
  const file = join(dataDir, 'audit-head.json');
  return {
    where: file,
    read() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      const parsed = stateSchema.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(`${file} is not an audit anchor`);
      return parsed.data;
    },
    async write(state) {
      // Written whole to a temp file, synced, then renamed over the old one: a crash leaves the
      // old anchor or the new one, never half of one. Asynchronous, so a slow disk holds up
      // neither the event loop nor the append (see the coalescing in audit.ts).
      const tmp = `${file}.${process.pid}.tmp`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(state)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
    },
  };
}

/** An anchor in memory (tests, and callers without a data dir). */
export function memoryAuditAnchor(): AuditAnchor & { state: AuditAnchorState | null } {
  return {
    where: 'memory',
    state: null,
    read() {
      return this.state;
    },
    write(state) {
      this.state = structuredClone(state);
      return Promise.resolve();
    },
  };
}
