// An enroll-mode connection after its handshake: the agent sends one `enroll` frame with a join
// token; the controller creates the host, answers `enrolled` (or an error) and closes.
import type { Logger } from 'pino';
import {
  closeCodes,
  describeSchemaError,
  KeelError,
  SealedChannel,
  storableText,
  type SessionFrame,
} from '@keel/shared';
import type { Authenticated, Conversation } from './handshake.ts';
import type { GatewayStore } from './store.ts';
import { safeClose } from './socket.ts';

export interface EnrollmentDeps {
  store: Pick<GatewayStore, 'enroll'>;
  log: Logger;
  /** A host was enrolled with this key (the gateway adds it to its key index and publishes it). */
  onEnrolled(agentKey: string, hostId: string): void;
}

/** A host name as the agent may give it: like the facts' text fields, and not blank. */
const hostName = storableText(255);

/**
 * Takes over an authenticated enroll-mode connection: one enroll attempt per connection; once
 * the answer is decided nothing more from the connection is processed.
 */
export function startEnrollment(conn: Authenticated, deps: EnrollmentDeps): Conversation {
  const { ws, peer, agentKey } = conn;
  const log = deps.log;
  let attempted = false;
  const channel: SealedChannel = new SealedChannel(ws, conn.sealed, {
    onFrame: (frame) => {
      conn.stopTimer();
      if (attempted) {
        // One attempt per connection: a second frame (another token to try) ends it, unanswered.
        log.info({ peer }, 'enrolling agent sent a second frame; closing');
        channel.fail(closeCodes.unexpected, 'one enroll attempt per connection');
        return;
      }
      attempted = true;
      void onEnrollFrame(frame);
    },
    onProtocolError: (code, reason) => log.info({ peer, code, reason }, 'enrolling agent sent a bad frame'),
  });

  const onEnrollFrame = async (frame: SessionFrame) => {
    if (frame.type !== 'enroll')
      return channel.fail(closeCodes.unexpected, `expected enroll, got ${frame.type}`);
    /** Answers once and closes; nothing is processed after this. */
    const finish = (answer: SessionFrame, code: number, reason: string) => {
      if (channel.closed) return;
      channel.send(answer);
      channel.markClosed();
      safeClose(ws, code, reason);
    };
    const name = hostName.safeParse(frame.name?.trim() || frame.facts.hostname);
    if (!name.success) {
      const error = new KeelError('request.invalid', `Bad host name: ${describeSchemaError(name.error)}.`);
      return finish({ type: 'error', error: error.toJSON() }, closeCodes.malformed, error.code);
    }
    try {
      const host = await deps.store.enroll({
        publicKey: agentKey,
        name: name.data,
        facts: frame.facts,
        tokenSecret: frame.token,
      });
      log.info({ peer, host: host.id }, 'agent enrolled');
      deps.onEnrolled(agentKey, host.id);
      finish({ type: 'enrolled', hostId: host.id }, 1000, 'enrolled');
    } catch (err) {
      const error = err instanceof KeelError ? err : new KeelError('internal');
      if (!(err instanceof KeelError)) log.error({ peer, err }, 'enroll failed');
      finish({ type: 'error', error: error.toJSON() }, closeCodes.unknownAgent, error.code);
    }
  };

  return {
    receive: (bytes) => channel.receive(bytes),
    closed: () => channel.markClosed(),
  };
}
