// API shapes the console reads, named from the controller's route types (through the typed
// client in api.ts), so a change to a route's schema shows up here as a type error.
import type { Answer } from './api.ts';

/** A timestamp as the API sends it: ISO 8601 string or epoch milliseconds; null when not (yet) set. */
export type Timestamp = string | number | null;

/** Hosts as the pages render them, read at the client boundary (host.ts). */
export type { DiskFacts, Host, HostCapabilities, HostFacts } from './host.ts';

/** The host's state as the console shows it. */
export type HostState = 'online' | 'offline' | 'revoked';

/** `POST /auth/login` and `GET /auth/session`. */
export type SessionInfo = Answer<'session'>;

/** A console user. */
export type User = SessionInfo['user'];

/** What a user may do: viewer < operator < admin < owner. */
export type Role = User['role'];

/** `GET /hosts/:id/events`. */
export type HostEventsPage = Answer<'hostEvents'>;

/** One record of a host's event stream. */
export type HostEvent = HostEventsPage['events'][number];

/** A run of event sequence numbers that never reached the controller (spool overflow). */
export type StreamGap = HostEventsPage['gaps'][number];

/** `POST /join-tokens`: the secret and install command are shown once. */
export type CreatedJoinToken = Answer<'createJoinToken'>;

/** `GET /audit`: one page, newest first. */
export type AuditPage = Answer<'listAudit'>;

/** One row of the hash-chained audit trail. */
export type AuditEntry = AuditPage['entries'][number];

/** `GET /audit/verify`: the verdict on the hash chain. */
export type AuditVerification = Answer<'verifyAudit'>;
