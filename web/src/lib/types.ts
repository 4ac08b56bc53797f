// API shapes the console reads, as fixed in docs/contracts.md. Hand-copied for now; they move to
// typed calls from the controller's route types (Hono `hc<AppType>`) once the routes land.

/** A timestamp as the API sends it: ISO 8601 string or epoch milliseconds; null when not (yet) set. */
export type Timestamp = string | number | null;

/** One mounted filesystem on a host. */
export interface DiskFact {
  mount: string;
  fs: string;
  type: string;
  sizeBytes: number;
  usedBytes: number;
}

/** What an agent reports about its machine (shared `hostFactsSchema`). */
export interface HostFacts {
  hostname: string;
  os: { platform: string; distro: string; release: string; codename: string; arch: string };
  kernel: string;
  cpu: { model: string; cores: number; physicalCores: number; speedGHz: number };
  memory: { totalBytes: number };
  disks: DiskFact[];
  agentVersion: string;
  /** Boot time as epoch milliseconds (epoch seconds are tolerated, see `bootTimeMs`). */
  bootTime: number;
  uptimeSeconds: number;
}

/** An enrolled host as the controller stores it. */
export interface Host {
  id: string;
  name: string;
  online: boolean;
  connectedAt: Timestamp;
  lastSeenAt: Timestamp;
  enrolledAt: Timestamp;
  revokedAt: Timestamp;
  agentVersion: string | null;
  /** Null until the agent has reported facts once. */
  facts: HostFacts | null;
}

/** The host's state as the console shows it. */
export type HostState = 'online' | 'offline' | 'revoked';

/** A console user. */
export interface User {
  id: string;
  username: string;
  role: string;
}

/** `POST /auth/login` and `GET /auth/session`. */
export interface SessionInfo {
  user: User;
  csrfToken: string;
}

/** One record of a host's event stream. */
export interface HostEvent {
  seq: number;
  ts: Timestamp;
  kind: string;
  data: Record<string, unknown>;
}

/** A run of event sequence numbers that never reached the controller (spool overflow). */
export interface StreamGap {
  fromSeq: number;
  toSeq: number;
  at: Timestamp;
}

/** `GET /hosts/:id/events`. */
export interface HostEventsPage {
  events: HostEvent[];
  gaps: StreamGap[];
}

/** `POST /hosts/:id/ping`. */
export interface PingResult {
  rttMs: number;
  agentTime: Timestamp;
}

/** A join token without its secret. */
export interface JoinToken {
  id: string;
  note: string | null;
  expiresAt: Timestamp;
  usesLeft: number;
  createdAt: Timestamp;
}

/** `POST /join-tokens`: the secret and install command are shown once. */
export interface CreatedJoinToken {
  token: JoinToken;
  secret: string;
  command: string;
}

/** The API error body. */
export interface ApiErrorBody {
  error: { code: string; message: string };
}
