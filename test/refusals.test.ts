// Proves that only a refusal the agent can verify stops it: a man in the middle that injects close
// codes 4403/4410/4426 or pre-auth error frames (unsigned, or signed by a key that is not the
// pinned one) before or after the handshake only makes the agent retry; a real revocation (sealed
// in the session, or signed by the pinned controller key before it) stops it, reporting the code
// it actually received; and the agent closes its socket cleanly (no TCP reset) when it ends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import {
  closeCodes,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  generateSigningIdentity,
  controllerPreAuthFrames,
  refusalFrame,
  type SigningIdentity,
} from '@keel/shared';
import { AgentLink, LinkClosed, openSession } from '../agent/src/link/connection.ts';
import {
  enrollAgent,
  enrollIdentity,
  joinToken,
  removeDir,
  startTestController,
  tempDir,
  waitFor,
} from './helpers/fleet.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;
let ctl: Ctl;

/** What the proxy does to the next connections. */
type Attack =
  | { kind: 'pass' }
  | { kind: 'close'; code: number }
  | { kind: 'error'; code: string; signedBy?: SigningIdentity }
  | { kind: 'close-after-welcome'; code: number };

/**
 * A man in the middle between agents and the controller: relays messages both ways, or injects
 * what `attack` says. Records the close code each agent-side socket ended with.
 */
class Mitm {
  attack: Attack = { kind: 'pass' };
  attempts = 0;
  /** The close code each agent-side socket ended with, by connection number (from 1). */
  agentCloses = new Map<number, number>();
  readonly wss: WebSocketServer;
  constructor(target: string) {
    this.wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    this.wss.on('connection', (agent) => {
      const n = ++this.attempts;
      const attack = this.attack;
      agent.on('close', (code) => this.agentCloses.set(n, code));
      agent.on('error', () => {});
      const upstream = new WebSocket(`${target}/agent/v1`);
      upstream.on('error', () => agent.terminate());
      const queued: Buffer[] = [];
      let fromController = 0;
      upstream.on('open', () => {
        for (const m of queued.splice(0)) upstream.send(m);
      });
      agent.on('message', (data: RawData) => {
        const bytes = data as Buffer;
        if (fromController === 0 && attack.kind === 'close') return agent.close(attack.code, 'injected');
        if (fromController === 0 && attack.kind === 'error') {
          const decoded = decodeHandshakeFrame(controllerPreAuthFrames, bytes);
          const hello = decoded.ok && decoded.value.type === 'hello' ? decoded.value : null;
          const frame = attack.signedBy
            ? refusalFrame(attack.signedBy, hello, attack.code, 'injected')
            : { type: 'error' as const, code: attack.code, message: 'injected' };
          agent.send(encodeHandshakeFrame(frame));
          return agent.close(closeCodes.revoked, 'injected');
        }
        if (upstream.readyState === upstream.OPEN) upstream.send(bytes);
        else queued.push(bytes);
      });
      upstream.on('message', (data: RawData) => {
        fromController++;
        agent.send(data as Buffer);
        // hello.controller, then the sealed welcome: cut in with a close code after it.
        if (attack.kind === 'close-after-welcome' && fromController === 2) {
          setTimeout(() => agent.close(attack.code, 'injected'), 20);
        }
      });
      upstream.on('close', (code, reason) => {
        if (agent.readyState === agent.OPEN) agent.close(code === 1005 ? 1000 : code, reason.toString());
      });
      agent.on('close', () => upstream.close());
    });
  }
  get url(): string {
    return `http://127.0.0.1:${(this.wss.address() as { port: number }).port}`;
  }
}

let mitm: Mitm;

before(async () => {
  ctl = await startTestController();
  mitm = new Mitm(`ws://127.0.0.1:${ctl.port}`);
  await new Promise<void>((r) => mitm.wss.once('listening', () => r()));
});
after(async () => {
  await new Promise<void>((r) => mitm?.wss.close(() => r()));
  await ctl?.close();
  if (ctl) removeDir(ctl.dataDir);
});

const enrolled = () => enrollIdentity(ctl, 'mitm');

function link(identity: SigningIdentity): AgentLink {
  return new AgentLink({
    controllerUrl: mitm.url,
    identity,
    pin: ctl.fingerprint,
    log: pino({ level: 'silent' }),
    streams: new Map(),
    handlers: {},
    heartbeatMs: 60_000,
    backoff: { baseMs: 10, maxMs: 40 },
  });
}

describe('unverifiable refusals are retried', () => {
  const attacks: [string, Attack][] = [
    ['close 4403 before the handshake', { kind: 'close', code: closeCodes.unknownAgent }],
    ['close 4410 before the handshake', { kind: 'close', code: closeCodes.revoked }],
    ['close 4426 before the handshake', { kind: 'close', code: closeCodes.version }],
    ['an unsigned handshake.revoked error frame', { kind: 'error', code: 'handshake.revoked' }],
    ['an unsigned handshake.version error frame', { kind: 'error', code: 'handshake.version' }],
    [
      'a handshake.revoked error signed by a key that is not the pinned one',
      { kind: 'error', code: 'handshake.revoked', signedBy: generateSigningIdentity() },
    ],
    ['close 4410 after the welcome', { kind: 'close-after-welcome', code: closeCodes.revoked }],
    ['close 4403 after the welcome', { kind: 'close-after-welcome', code: closeCodes.unknownAgent }],
  ];
  for (const [what, attack] of attacks) {
    test(`${what}: the agent keeps retrying, then connects`, { timeout: 30_000 }, async () => {
      const { identity, hostId } = await enrolled();
      mitm.attack = attack;
      const start = mitm.attempts;
      const agent = link(identity);
      let ended: LinkClosed | null | undefined;
      const running = agent.run().then((r) => (ended = r));
      await waitFor(() => mitm.attempts - start >= 4, 10_000, 'four attempts');
      assert.equal(ended, undefined, `run() ended: ${String(ended)}`);
      mitm.attack = { kind: 'pass' };
      await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'online once the path is clean');
      await agent.stop();
      assert.equal(await running, null);
    });
  }
});

describe('verified refusals stop the agent, with the code received', () => {
  test(
    'a key that is not enrolled: the signed pre-auth refusal is fatal, code 4403',
    { timeout: 60_000 },
    async () => {
      mitm.attack = { kind: 'pass' };
      const err = await openSession({
        controllerUrl: mitm.url,
        identity: generateSigningIdentity(),
        pin: ctl.fingerprint,
        mode: 'connect',
        onFrame: () => {},
      }).catch((e: unknown) => e);
      assert.ok(err instanceof LinkClosed, String(err));
      assert.equal(err.fatal, true);
      assert.equal(err.closeCode, closeCodes.unknownAgent);
      assert.match(err.reason, /handshake\.unknown_agent/);
    },
  );

  test(
    'a revoked host: the sealed refusal ends run() with 4410; next time the signed one does',
    { timeout: 60_000 },
    async () => {
      mitm.attack = { kind: 'pass' };
      const { identity, hostId } = await enrolled();
      const agent = link(identity);
      const running = agent.run();
      await waitFor(() => ctl.gateway.isOnline(hostId), 10_000, 'online');
      const connection = mitm.attempts;
      await ctl.services.hosts.revoke(hostId, { id: 'system', ip: null });
      const ended = await running;
      assert.ok(ended instanceof LinkClosed && ended.fatal, String(ended));
      assert.equal(ended.closeCode, closeCodes.revoked);
      assert.match(ended.reason, /handshake\.revoked/);
      // The agent answered the controller's close: a clean close on its side, not a reset (1006).
      await waitFor(() => mitm.agentCloses.has(connection), 5_000, 'agent socket closed');
      assert.equal(mitm.agentCloses.get(connection), closeCodes.revoked);

      const again = await link(identity).run();
      assert.ok(again instanceof LinkClosed && again.fatal, String(again));
      assert.equal(again.closeCode, closeCodes.revoked);
    },
  );

  test(
    'keel-agent enroll closes its socket cleanly before it exits (no reset)',
    { timeout: 60_000 },
    async () => {
      mitm.attack = { kind: 'pass' };
      const connection = mitm.attempts + 1;
      const stateDir = tempDir('keel-agent-');
      try {
        const r = await enrollAgent(stateDir, mitm.url, await joinToken(ctl), ctl.fingerprint, 'clean');
        assert.equal(r.code, 0, r.output);
        // A process that exits with its socket open resets it: the proxy would see 1006.
        // The close reached the proxy before the process exited; this process may see it later.
        await waitFor(() => mitm.agentCloses.has(connection), 10_000, 'agent socket closed');
        assert.equal(mitm.agentCloses.get(connection), 1000);
      } finally {
        removeDir(stateDir);
      }
    },
  );
});
