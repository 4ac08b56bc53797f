// Hosts written straight into a controller's database, bypassing enrollment and the agent link:
// for console tests that need a host whose stored name or facts are odd (null, partial, mistyped,
// huge), as an older controller or a hostile agent could have left them.
import { randomBytes } from 'node:crypto';
import { hosts } from '../../controller/src/db/schema/hosts.ts';
import type { Controller } from '../../controller/src/server.ts';

/** What to store; `facts` is any JSON value, stored as is. */
export interface StoredHost {
  name: string;
  facts?: unknown;
  agentVersion?: string | null;
  online?: boolean;
  lastSeenAt?: Date | null;
}

/** Inserts a host row (with a fresh random key) and returns its id. */
export async function storeHost(controller: Controller, host: StoredHost): Promise<string> {
  const [row] = await controller.database.db
    .insert(hosts)
    .values({
      name: host.name,
      publicKey: randomBytes(32).toString('base64url'),
      // Any JSON, on purpose: the column's declared type is what a well-behaved agent sends.
      facts: (host.facts ?? null) as never,
      agentVersion: host.agentVersion ?? null,
      online: host.online ?? false,
      lastSeenAt: host.lastSeenAt === undefined ? new Date() : host.lastSeenAt,
    })
    .returning({ id: hosts.id });
  if (!row) throw new Error('host not stored');
  return row.id;
}
