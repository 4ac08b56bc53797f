// What the rest of the controller may ask of the agent gateway: send requests to connected
// agents, cut sessions, and know who is online.
import type { HostCapabilities, HostFacts, RequestName, RequestParams, RequestResult } from '@keel/shared';

/** A host as the API and the console see it. */
export interface HostView {
  id: string;
  name: string;
  online: boolean;
  connectedAt: string | null;
  lastSeenAt: string | null;
  enrolledAt: string;
  revokedAt: string | null;
  agentVersion: string | null;
  facts: HostFacts | null;
  /**
   * What the host's agent serves, from its live session's announcement (the baseline, with
   * `announced: false`, for an agent that announces nothing); null while it is not connected here.
   */
  capabilities: HostCapabilities | null;
}

/**
 * Request methods an agent answers, with their params and results: derived from the request
 * catalogue (`shared/src/catalogue.ts`), where each request is defined once.
 */
export type AgentRequestMap = {
  [N in RequestName]: { params: RequestParams<N>; result: RequestResult<N> };
};
export type AgentRequestMethod = RequestName;

/** The agent gateway as seen from routes and services. */
export interface AgentGateway {
  /**
   * Sends a request to a host's agent and resolves with its typed result, validated against the
   * catalogue's result schema. Waits for an offline host to come online until the deadline; fails
   * with KeelError 'request.invalid' (params), 'request.unknown_method', 'agent.unsupported' (the
   * agent did not announce it; no round trip), 'agent.bad_result' (a malformed answer),
   * 'request.deadline_exceeded', 'request.disconnected', 'host.revoked' or the agent's own error.
   * Never sends a request twice.
   */
  request<M extends AgentRequestMethod>(
    hostId: string,
    method: M,
    params: AgentRequestMap[M]['params'],
    opts?: { timeoutMs?: number },
  ): Promise<AgentRequestMap[M]['result']>;
  /** Closes a host's live session (e.g. on revoke); returns true when one was open. */
  disconnect(hostId: string, reason: 'revoked'): boolean;
  /** True when the host has a live, authenticated session on this controller. */
  isOnline(hostId: string): boolean;
  /**
   * True when a one-shot request to the host can be made now: its session is here or, with
   * replicas, on another replica reachable over the bus (bus/routing.ts). Absent: `isOnline`.
   * Job runs open their channels on every reachable host; the scheduler prefers (by `isOnline`)
   * a replica holding a target host.
   */
  isReachable?(hostId: string): Promise<boolean>;
  /**
   * Why a host online in the database is not reachable from here (replicas: this one lost the
   * bus, or the replica holding it is gone from it), or null when it is simply offline.
   */
  unreachableReason?(hostId: string): Promise<string | null>;
  /** The capabilities of the host's live session on this controller, or null. */
  capabilitiesOf?(hostId: string): HostCapabilities | null;
}
