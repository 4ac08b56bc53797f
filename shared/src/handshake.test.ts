// Proves the handshake: a fixed vector pins the transcript and session keys, the agent aborts on
// a pin mismatch before producing anything secret, replays and forged signatures fail, sealed
// frames reject replay/reorder/forgery, and the pre-auth dispatch table is only the handshake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import {
  AgentHandshake,
  ControllerHandshake,
  HandshakeFailure,
  negotiateVersion,
  transcriptHash,
} from './handshake.ts';
import {
  ephemeralKeyFromRaw,
  fromB64u,
  generateSigningIdentity,
  keyFingerprint,
  signingIdentityFromSeed,
  toB64u,
} from './keys.ts';
import { agentPreAuthFrames, controllerPreAuthFrames, type ControllerHello } from './frames.ts';
import { decodeHandshakeFrame, encodeHandshakeFrame } from './codec.ts';
import { FrameOpener, FrameSealer } from './sealed.ts';

const seed = (n: number) => Buffer.alloc(32, n);

function pair(opts: { pin?: string; mode?: 'connect' | 'enroll' } = {}) {
  const agentId = generateSigningIdentity();
  const controllerId = generateSigningIdentity();
  const agent = new AgentHandshake({
    identity: agentId,
    pin: opts.pin ?? keyFingerprint(controllerId.publicKey),
    mode: opts.mode ?? 'connect',
  });
  const controller = new ControllerHandshake({ identity: controllerId });
  return { agent, controller, agentId, controllerId };
}

test('fixed vector: transcript, signatures and session keys are deterministic and tweetnacl-verifiable', () => {
  const agentId = signingIdentityFromSeed(seed(1));
  const controllerId = signingIdentityFromSeed(seed(2));
  const agent = new AgentHandshake({
    identity: agentId,
    pin: keyFingerprint(controllerId.publicKey),
    mode: 'connect',
    // The vector as recorded with protocol 1 (the transcript layout is the same for every version).
    versions: [1],
    fixed: { ephemeral: ephemeralKeyFromRaw(seed(3)), nonce: seed(4) },
  });
  const controller = new ControllerHandshake({
    identity: controllerId,
    fixed: { ephemeral: ephemeralKeyFromRaw(seed(5)), nonce: seed(6) },
  });
  const ch = controller.onHello(agent.hello);
  const { signature, ...unsigned } = ch;
  const transcript = transcriptHash(agent.hello, unsigned);
  // Pinned: a change to the transcript layout or key schedule breaks every deployed agent.
  assert.equal(
    transcript.toString('hex'),
    '852a040d67d5f9e6e86224cb20a9a73861e17f122a69da89f3ea77d9172b6b6a',
  );
  // Independent check of the controller's signature with tweetnacl.
  const signed = Buffer.concat([Buffer.from('keel/v1 controller signature'), transcript]);
  assert.equal(nacl.sign.detached.verify(signed, fromB64u(signature, 64)!, controllerId.publicKey), true);
  const { auth, session: agentSession } = agent.onControllerHello(ch);
  const controllerSession = controller.onAuth(auth);
  assert.equal(agentSession.id, controllerSession.id);
  // ed25519 is deterministic: the same inputs give the same signature every run.
  assert.equal(
    signature,
    new ControllerHandshake({
      identity: controllerId,
      fixed: { ephemeral: ephemeralKeyFromRaw(seed(5)), nonce: seed(6) },
    }).onHello(agent.hello).signature,
  );
  const sealed = agentSession.sealer.seal(Buffer.from('vector'));
  assert.equal(sealed.toString('hex'), '129f86f076d8a04319080b30695129d9a0ccd7038ff4');
  assert.equal(controllerSession.opener.open(sealed)?.toString(), 'vector');
});

test('handshake completes and frames flow both ways', () => {
  const { agent, controller, agentId } = pair();
  const { auth, session: a } = agent.onControllerHello(controller.onHello(agent.hello));
  const c = controller.onAuth(auth);
  assert.deepEqual(c.peerKey, agentId.publicKey);
  for (let i = 0; i < 5; i++) {
    assert.equal(c.opener.open(a.sealer.seal(Buffer.from(`up ${i}`)))?.toString(), `up ${i}`);
    assert.equal(a.opener.open(c.sealer.seal(Buffer.from(`down ${i}`)))?.toString(), `down ${i}`);
  }
});

test('agent aborts on pin mismatch before signing anything', () => {
  const other = generateSigningIdentity();
  const { agent, controller } = pair({ pin: keyFingerprint(other.publicKey) });
  const ch = controller.onHello(agent.hello);
  assert.throws(
    () => agent.onControllerHello(ch),
    (e: unknown) => e instanceof HandshakeFailure && e.code === 'handshake.pin_mismatch',
  );
});

test('agent rejects a controller hello whose signature is forged, truncated or over-long', () => {
  for (const mutate of [
    () => toB64u(Buffer.alloc(64)),
    (s: string) => s.slice(0, 40),
    (s: string) => s + 'AAAA',
    (s: string) => {
      const b = fromB64u(s, 64)!;
      b[0]! ^= 0x80;
      return toB64u(b);
    },
  ]) {
    const { agent, controller } = pair();
    const ch = controller.onHello(agent.hello);
    assert.throws(
      () => agent.onControllerHello({ ...ch, signature: mutate(ch.signature) }),
      HandshakeFailure,
    );
  }
});

test('an impostor controller with another key but the same pin fails the signature check', () => {
  const { agent, controller, controllerId } = pair();
  const ch = controller.onHello(agent.hello);
  const impostor = new ControllerHandshake({ identity: generateSigningIdentity() }).onHello(agent.hello);
  // Claims the pinned key but signs with its own.
  const forged: ControllerHello = { ...impostor, controllerKey: toB64u(controllerId.publicKey) };
  assert.ok(ch);
  assert.throws(() => agent.onControllerHello(forged), /signature/);
});

test('controller rejects a bad agent signature and low-order ephemeral keys', () => {
  const { agent, controller } = pair();
  const ch = controller.onHello(agent.hello);
  agent.onControllerHello(ch);
  assert.throws(
    () => controller.onAuth({ type: 'auth', signature: toB64u(Buffer.alloc(64)) }),
    HandshakeFailure,
  );

  const p2 = pair();
  const zeroHello = { ...p2.agent.hello, ephemeralKey: toB64u(Buffer.alloc(32)) };
  const ch2 = p2.controller.onHello(zeroHello);
  assert.ok(ch2.signature);
  assert.throws(
    () => p2.controller.onAuth({ type: 'auth', signature: toB64u(Buffer.alloc(64)) }),
    HandshakeFailure,
  );
});

test('replayed handshake: a recorded hello+auth does not authenticate against a fresh controller nonce', () => {
  const { agent, controller, controllerId } = pair();
  const { auth } = agent.onControllerHello(controller.onHello(agent.hello));
  controller.onAuth(auth);
  const replayTarget = new ControllerHandshake({ identity: controllerId });
  replayTarget.onHello(agent.hello);
  assert.throws(() => replayTarget.onAuth(auth), /agent signature is invalid/);
});

test('sealed frames: replayed, reordered, dropped and forged frames are rejected', () => {
  const key = randomBytes(32);
  const sealer = new FrameSealer(key);
  const frames = [0, 1, 2, 3].map((i) => sealer.seal(Buffer.from(`frame ${i}`)));
  const opener = new FrameOpener(key);
  assert.equal(opener.open(frames[0]!)?.toString(), 'frame 0');
  assert.equal(opener.open(frames[0]!), null, 'replay');
  assert.equal(opener.open(frames[2]!), null, 'reorder/drop');
  const forged = Buffer.from(frames[1]!);
  forged[0]! ^= 1;
  assert.equal(opener.open(forged), null, 'forged');
  assert.equal(opener.open(Buffer.alloc(5)), null, 'shorter than a tag');
  assert.equal(opener.open(frames[1]!)?.toString(), 'frame 1');
  // A frame sealed under the other direction's key never opens.
  assert.equal(new FrameOpener(randomBytes(32)).open(frames[0]!), null);
});

test('pre-auth dispatch tables are exactly the handshake messages', () => {
  assert.deepEqual(Object.keys(controllerPreAuthFrames).sort(), ['auth', 'hello']);
  assert.deepEqual(Object.keys(agentPreAuthFrames).sort(), ['error', 'hello.controller']);
  for (const type of [
    'req',
    'res',
    'stream.data',
    'stream.ack',
    'welcome',
    'facts',
    'enroll',
    'hello.controller',
  ]) {
    const r = decodeHandshakeFrame(controllerPreAuthFrames, Buffer.from(JSON.stringify({ type })));
    assert.equal(r.ok, false, type);
  }
  assert.equal(decodeHandshakeFrame(controllerPreAuthFrames, Buffer.from('{not json')).ok, false);
  assert.equal(decodeHandshakeFrame(controllerPreAuthFrames, Buffer.from('null')).ok, false);
  const { agent } = pair();
  const ok = decodeHandshakeFrame(controllerPreAuthFrames, encodeHandshakeFrame(agent.hello));
  assert.equal(ok.ok, true);
});

test('version negotiation picks the highest common version or none', () => {
  assert.equal(negotiateVersion([1, 2, 3], [1, 2]), 2);
  assert.equal(negotiateVersion([4], [1]), null);
  const { agent, controller } = pair();
  assert.throws(
    () => controller.onHello({ ...agent.hello, versions: [9] }),
    (e: unknown) => e instanceof HandshakeFailure && e.code === 'handshake.version',
  );
});
