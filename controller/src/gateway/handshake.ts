// The handshake of one agent connection, from the upgrade until the agent proved its key: hello
// (the key checked against the index or the store), the controller's signed answer, the agent's
// auth. Then the connection is handed to a session (connect mode) or an enrollment (enroll mode),
// which receive every later message. Pre-auth failures get a handshake `error` frame and a close
// code; nothing but the handshake messages is accepted before auth.
import type { Logger } from 'pino';
import type { WebSocket, RawData } from 'ws';
import {
  closeCodes,
  controllerPreAuthFrames,
  ControllerHandshake,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  HandshakeFailure,
  refusalFrame,
  toB64u,
  type AgentHello,
  type Session,
  type SigningIdentity,
} from '@keel/shared';
import type { GatewayHost } from './store.ts';
import { safeClose, setMaxPayload } from './socket.ts';

/** Largest handshake message; the socket's limit is raised to maxFrameBytes only after auth. */
const PRE_AUTH_MAX_PAYLOAD = 4096;

/** An agent that completed the handshake. */
export interface Authenticated {
  ws: WebSocket;
  sealed: Session;
  /** The agent's key, base64url. */
  agentKey: string;
  /** The enrolled host of that key, as looked up at hello (null when enrolling or unknown). */
  host: GatewayHost | null;
  peer: string;
  /** Stops the handshake deadline (an enrollment keeps it until its enroll frame arrives). */
  stopTimer(): void;
  /** Gives back the pending-handshake place. */
  settle(): void;
}

/** What receives an authenticated connection's messages until it closes. */
export interface Conversation {
  receive(bytes: Buffer): void;
  closed(code: number): void;
}

export interface HandshakeDeps {
  identity: SigningIdentity;
  log: Logger;
  timeoutMs: number;
  maxFrameBytes: number;
  /** The host of a key from the in-memory index, when there (no database read). */
  indexedHost(agentKey: string): GatewayHost | undefined;
  /** The host of a key missing from the index, from the store. */
  lookUpHost(agentKey: string): Promise<GatewayHost | null>;
  /** Revoked on this controller since the index was loaded. */
  isRevoked(hostId: string): boolean;
  /** Called once per completed handshake (a counter for the benchmark and /metrics). */
  onAuthenticated(): void;
  startSession(conn: Authenticated): Conversation;
  startEnrollment(conn: Authenticated): Conversation;
}

/** Runs the handshake on a freshly upgraded socket and hands it over once authenticated. */
export function runHandshake(ws: WebSocket, peer: string, settle: () => void, deps: HandshakeDeps): void {
  const log = deps.log;
  setMaxPayload(ws, PRE_AUTH_MAX_PAYLOAD);
  const handshake = new ControllerHandshake({ identity: deps.identity });
  let conversation: Conversation | null = null;
  let knownHost: GatewayHost | null = null;
  /** The agent's hello, once received: a refusal of it is signed (protocol 2). */
  let hello: AgentHello | null = null;
  let state: 'hello' | 'checking' | 'auth' | 'authenticated' = 'hello';
  // Runs until a connect-mode session starts or an enroll frame arrives.
  const timer = setTimeout(() => {
    reject(closeCodes.handshakeTimeout, 'handshake.failed', 'handshake timed out');
  }, deps.timeoutMs);
  timer.unref();

  const reject = (code: number, errorCode: string, message: string) => {
    clearTimeout(timer);
    log.info({ peer, code, errorCode, reason: message }, 'agent rejected');
    if (ws.readyState === ws.OPEN) {
      if (state !== 'authenticated') {
        ws.send(encodeHandshakeFrame(refusalFrame(deps.identity, hello, errorCode, message.slice(0, 500))));
      }
      safeClose(ws, code, message);
    }
  };

  const handshakeError = (err: unknown) => {
    if (err instanceof HandshakeFailure) {
      reject(
        err.code === 'handshake.version' ? closeCodes.version : closeCodes.handshakeFailed,
        err.code,
        err.message,
      );
    } else {
      log.error({ peer, err }, 'handshake error');
      reject(closeCodes.internal, 'internal', 'internal error');
    }
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    const bytes = toBuffer(data);
    if (conversation) return conversation.receive(bytes);
    if (state === 'authenticated') return; // handed over; nothing more is read here
    if (!isBinary) return reject(closeCodes.malformed, 'frame.malformed', 'handshake frames are binary');
    if (state === 'checking') {
      return reject(closeCodes.unexpected, 'frame.unexpected', 'frame before hello was answered');
    }
    const decoded = decodeHandshakeFrame(controllerPreAuthFrames, bytes);
    if (!decoded.ok) return reject(closeCodes.malformed, 'frame.malformed', decoded.reason);
    const frame = decoded.value;
    try {
      if (state === 'hello') {
        if (frame.type !== 'hello') {
          return reject(closeCodes.unexpected, 'frame.unexpected', `expected hello, got ${frame.type}`);
        }
        state = 'checking';
        hello = frame;
        const answer = (host: GatewayHost | null) => {
          knownHost = host;
          if (ws.readyState !== ws.OPEN) return;
          if (frame.mode === 'connect' && !host) {
            return reject(closeCodes.unknownAgent, 'handshake.unknown_agent', 'agent key is not enrolled');
          }
          if (host && (host.revoked || deps.isRevoked(host.id))) {
            return reject(closeCodes.revoked, 'handshake.revoked', 'agent has been revoked');
          }
          try {
            ws.send(encodeHandshakeFrame(handshake.onHello(frame)));
            state = 'auth';
          } catch (err) {
            handshakeError(err);
          }
        };
        // Enrolling agents have no host yet; known keys are answered at once, others looked up.
        const indexed = frame.mode === 'connect' ? deps.indexedHost(frame.agentKey) : undefined;
        if (frame.mode === 'enroll' || indexed) return answer(indexed ?? null);
        void deps.lookUpHost(frame.agentKey).then(answer, (err: unknown) => {
          log.error({ peer, err }, 'hello check failed');
          reject(closeCodes.internal, 'internal', 'internal error');
        });
        return;
      }
      if (frame.type !== 'auth') {
        return reject(closeCodes.unexpected, 'frame.unexpected', `expected auth, got ${frame.type}`);
      }
      const sealed = handshake.onAuth(frame);
      deps.onAuthenticated();
      setMaxPayload(ws, deps.maxFrameBytes);
      state = 'authenticated';
      const conn: Authenticated = {
        ws,
        sealed,
        agentKey: toB64u(sealed.peerKey),
        host: knownHost,
        peer,
        stopTimer: () => clearTimeout(timer),
        settle,
      };
      if (handshake.mode === 'enroll') {
        // An enrolling agent only proved a key it may have just made up: it keeps its pending
        // place until it closes, and the handshake timer runs until its enroll frame arrives.
        conversation = deps.startEnrollment(conn);
        return;
      }
      // A connect-mode agent proved an enrolled key: no longer a pending handshake.
      settle();
      clearTimeout(timer);
      conversation = deps.startSession(conn);
    } catch (err) {
      handshakeError(err);
    }
  });

  ws.on('close', (code) => {
    clearTimeout(timer);
    conversation?.closed(code);
  });
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
