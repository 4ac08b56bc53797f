// What the gateway needs from storage, kept narrow so the gateway can be tested and benchmarked
// on its own. main.ts adapts the repositories to it.
import type { HostFacts, RecordBatch } from '@keel/shared';
import type { HostView } from './types.ts';

/** One host's pending presence/facts change. */
export interface PresenceChange {
  online?: boolean;
  facts?: HostFacts;
  /**
   * The version the agent announced for the session going online (its capabilities), stored with
   * the online state: a host shows online on the release it runs, not the one its last facts
   * named (they come a moment later, in a commit of their own). Facts in the same change win.
   */
  agentVersion?: string;
}

/** A host's state when its session starts. */
export interface SessionInfo {
  revoked: boolean;
  /** Acked sequence per stream. */
  cursors: Record<string, number>;
}

/** A host as the gateway sees it at handshake time. */
export interface GatewayHost {
  id: string;
  revoked: boolean;
}

export interface GatewayStore {
  /** The hosts enrolled with these agent keys (base64url raw ed25519), by key; unknown keys are absent. */
  findHostsByKeys(publicKeys: string[]): Promise<Map<string, GatewayHost>>;
  /** Every host that is not revoked, by agent key: the gateway's key index at start. */
  activeHostKeys(): Promise<Map<string, GatewayHost>>;
  /** Redeems a join token and creates the host; throws KeelError('enroll.*'). */
  enroll(input: {
    publicKey: string;
    name: string;
    facts: HostFacts;
    tokenSecret: string;
  }): Promise<{ id: string }>;
  /**
   * Writes many hosts' presence (online/offline) and facts in one transaction — the gateway's
   * group commit, so a burst of connects costs one commit, not one per host — and returns the
   * changed hosts for publishing.
   */
  applyPresence(changes: ReadonlyMap<string, PresenceChange>, at: Date): Promise<HostView[]>;
  /** What a starting session needs: revocation (as stored now) and stream cursors, by host id. */
  sessionInfoOf(hostIds: string[]): Promise<Map<string, SessionInfo>>;
  /**
   * Records (in the audit trail) that a second machine presented this host's key while the host
   * was connected: a cloned disk image, or a stolen key.
   */
  recordKeyConflict(hostId: string, peer: string | null): Promise<void>;
  /**
   * Stores a batch (de-duplicating what is already stored) and returns the seq to ack; `restart`
   * when the agent's numbering went backwards and the stream restarted after a marked gap.
   */
  appendStream(
    hostId: string,
    stream: string,
    batch: RecordBatch,
  ): Promise<{ ackedSeq: number; restart?: { atSeq: number } }>;
}
