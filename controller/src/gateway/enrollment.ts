// An enroll-mode connection after its handshake: the agent sends one `enroll` frame with a join
// token; the controller creates the host, answers `enrolled` (or an error) and closes.
import type { Logger } from 'pino';
import { closeCodes, KeelError, SealedChannel, type SessionFrame } from '@keel/shared';
import type { Authenticated, Conversation } from './handshake.ts';
import type { GatewayStore } from './store.ts';
import { safeClose } from './socket.ts';

export interface EnrollmentDeps {
  store: Pick<GatewayStore, 'enroll'>;
  log: Logger;
  /** A host was enrolled with this key (the gateway adds it to its key index and publishes it). */
  onEnrolled(agentKey: string, hostId: string): void;
}

/** Takes over an authenticated enroll-mode connection. */
export function startEnrollment(conn: Authenticated, deps: EnrollmentDeps): Conversation {
  const { ws, peer, agentKey } = conn;
  const log = deps.log;
  const channel: SealedChannel = new SealedChannel(ws, conn.sealed, {
    onFrame: (frame) => {
      conn.stopTimer();
      void onEnrollFrame(frame);
    },
    onProtocolError: (code, reason) => log.info({ peer, code, reason }, 'enrolling agent sent a bad frame'),
  });

  const onEnrollFrame = async (frame: SessionFrame) => {
    if (frame.type !== 'enroll')
      return channel.fail(closeCodes.unexpected, `expected enroll, got ${frame.type}`);
    try {
      const host = await deps.store.enroll({
        publicKey: agentKey,
        name: frame.name?.trim() || frame.facts.hostname,
        facts: frame.facts,
        tokenSecret: frame.token,
      });
      log.info({ peer, host: host.id }, 'agent enrolled');
      deps.onEnrolled(agentKey, host.id);
      channel.send({ type: 'enrolled', hostId: host.id });
      safeClose(ws, 1000, 'enrolled');
    } catch (err) {
      const error = err instanceof KeelError ? err : new KeelError('internal');
      if (!(err instanceof KeelError)) log.error({ peer, err }, 'enroll failed');
      channel.send({ type: 'error', error: error.toJSON() });
      safeClose(ws, closeCodes.unknownAgent, error.code);
    }
  };

  return {
    receive: (bytes) => channel.receive(bytes),
    closed: () => channel.markClosed(),
  };
}
