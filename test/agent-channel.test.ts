// Proves the agent channel end to end against a real controller: enrollment with join tokens
// (expired, reused, 50 racing agents -> one host), pinning, the handshake's rejections, sealed
// frame replay/forgery, bad frames closing only their own connection, and host identity coming
// only from the handshake key.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectTcp } from 'node:net';
import WebSocket from 'ws';
import {
  AgentHandshake,
  closeCodes,
  encodeFrame,
  encodeHandshakeFrame,
  encodeRecords,
  generateSigningIdentity,
  keyFingerprint,
  toB64u,
  type SessionFrame,
  type SigningIdentity,
} from '@keel/shared';
import { LinkClosed, openSession, redeemJoinToken } from '../agent/src/link/connection.ts';
import { sampleFacts } from './helpers/facts.ts';
import { createHostRepository } from '../controller/src/repositories/hosts.ts';
import { enrollIdentity, joinToken, removeDir, startTestController, waitFor } from './helpers/fleet.ts';

type Ctl = Awaited<ReturnType<typeof startTestController>>;

/** Each test's own limit (a loaded 2-core machine is far slower than a quiet one). */
const limit = { timeout: 60_000 };
let ctl: Ctl;
let wsUrl: string;

before(
  async () => {
    ctl = await startTestController({ env: { KEEL_MAX_FRAME_BYTES: String(256 * 1024) } });
    wsUrl = `ws://127.0.0.1:${ctl.port}/agent/v1`;
  },
  { timeout: 180_000 },
);
after(async () => {
  await ctl.close();
  removeDir(ctl.dataDir);
});

/** Enrolls a fresh identity through the real agent link code; resolves with the host id. */
function enroll(identity: SigningIdentity, token: string, pin = ctl.fingerprint): Promise<string> {
  return redeemJoinToken({ controllerUrl: ctl.url, identity, pin, token, name: 'h', facts: sampleFacts });
}

/** Opens a connect-mode session and collects what the controller sends. */
async function connect(identity: SigningIdentity) {
  const frames: SessionFrame[] = [];
  const opened = await openSession({
    controllerUrl: ctl.url,
    identity,
    pin: ctl.fingerprint,
    mode: 'connect',
    onFrame: (f) => frames.push(f),
  });
  const closed = new Promise<number>((resolve) => opened.ws.once('close', (code) => resolve(code)));
  return { ...opened, frames, closed };
}

function rawSocket(): Promise<{ ws: WebSocket; closed: Promise<number>; messages: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    const messages: Buffer[] = [];
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.on('message', (d: Buffer) => messages.push(d));
    ws.once('open', () => resolve({ ws, closed, messages }));
    ws.once('error', reject);
  });
}

describe('enrollment and join tokens', () => {
  test('a valid token enrolls once; reusing it fails', limit, async () => {
    const token = await joinToken(ctl);
    const id = await enroll(generateSigningIdentity(), token);
    assert.ok((await ctl.services.hosts.get(id))?.id);
    await assert.rejects(enroll(generateSigningIdentity(), token), /enroll\.token_used/);
  });

  test('an expired token is refused', limit, async () => {
    const token = await joinToken(ctl, { ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    await assert.rejects(enroll(generateSigningIdentity(), token), /enroll\.token_expired/);
  });

  test('an unknown token is refused', limit, async () => {
    await assert.rejects(enroll(generateSigningIdentity(), 'kjt_not-a-real-token'), /enroll\.token_invalid/);
  });

  test('50 agents racing for one single-use token make exactly one host', limit, async () => {
    const token = await joinToken(ctl);
    const before = (await ctl.services.hosts.list()).length;
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => enroll(generateSigningIdentity(), token)),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.equal(ok.length, 1, JSON.stringify(results.filter((r) => r.status === 'rejected').slice(0, 2)));
    for (const r of results)
      if (r.status === 'rejected') assert.match(String(r.reason), /enroll\.token_used/);
    assert.equal((await ctl.services.hosts.list()).length, before + 1);
  });

  test('a wrong pin aborts before the token is sent: the token stays usable', limit, async () => {
    const token = await joinToken(ctl);
    const wrongPin = keyFingerprint(generateSigningIdentity().publicKey);
    const err = await enroll(generateSigningIdentity(), token, wrongPin).catch((e: unknown) => e);
    // Not fatal: a key that is not the pinned one is also what a man in the middle presents.
    assert.ok(
      err instanceof LinkClosed && !err.fatal && err.closeCode === closeCodes.pinMismatch,
      String(err),
    );
    // Had the token crossed the wire it would be consumed now.
    assert.ok(await enroll(generateSigningIdentity(), token));
  });
});

describe('handshake', () => {
  test('an agent key that is not enrolled is rejected with a fatal close', limit, async () => {
    const err = await connect(generateSigningIdentity()).catch((e: unknown) => e);
    assert.ok(err instanceof LinkClosed && err.fatal, String(err));
  });

  test('an enrolled agent gets a welcome with its host id', limit, async () => {
    const identity = generateSigningIdentity();
    const hostId = await enroll(identity, await joinToken(ctl));
    const s = await connect(identity);
    const welcome = await waitFor(() => s.frames.find((f) => f.type === 'welcome'));
    assert.equal(welcome.type === 'welcome' && welcome.hostId, hostId);
    await waitFor(() => ctl.gateway.isOnline(hostId));
    s.ws.close();
  });

  test('a replayed hello+auth from a recorded session does not authenticate', limit, async () => {
    const identity = generateSigningIdentity();
    await enroll(identity, await joinToken(ctl));
    // Record a real handshake.
    const rec = await rawSocket();
    const hs = new AgentHandshake({ identity, pin: ctl.fingerprint, mode: 'connect' });
    rec.ws.send(encodeHandshakeFrame(hs.hello));
    await waitFor(() => rec.messages.length >= 1);
    const { auth } = hs.onControllerHello(JSON.parse(rec.messages[0]!.toString()));
    rec.ws.send(encodeHandshakeFrame(auth));
    rec.ws.close();
    // Replay both frames on a new connection.
    const replay = await rawSocket();
    replay.ws.send(encodeHandshakeFrame(hs.hello));
    await waitFor(() => replay.messages.length >= 1);
    replay.ws.send(encodeHandshakeFrame(auth));
    assert.equal(await replay.closed, closeCodes.handshakeFailed);
  });

  test(
    'truncated and over-long signatures, all-zero and low-order keys close without harming the controller',
    limit,
    async () => {
      const identity = generateSigningIdentity();
      await enroll(identity, await joinToken(ctl));
      for (const tamper of [
        (sig: string) => sig.slice(0, 50),
        (sig: string) => sig + 'AAAAAAAA',
        () => toB64u(Buffer.alloc(64)),
      ]) {
        const raw = await rawSocket();
        const hs = new AgentHandshake({ identity, pin: ctl.fingerprint, mode: 'connect' });
        raw.ws.send(encodeHandshakeFrame(hs.hello));
        await waitFor(() => raw.messages.length >= 1);
        const { auth } = hs.onControllerHello(JSON.parse(raw.messages[0]!.toString()));
        raw.ws.send(encodeHandshakeFrame({ type: 'auth', signature: tamper(auth.signature) }));
        assert.equal(await raw.closed, closeCodes.handshakeFailed);
      }
      for (const field of ['agentKey', 'ephemeralKey'] as const) {
        const raw = await rawSocket();
        const hs = new AgentHandshake({
          identity: generateSigningIdentity(),
          pin: ctl.fingerprint,
          mode: 'enroll',
        });
        raw.ws.send(encodeHandshakeFrame({ ...hs.hello, [field]: toB64u(Buffer.alloc(32)) }));
        if (field === 'ephemeralKey') {
          await waitFor(() => raw.messages.length >= 1);
          raw.ws.send(encodeHandshakeFrame({ type: 'auth', signature: toB64u(Buffer.alloc(64)) }));
        } else {
          await waitFor(() => raw.messages.length >= 1);
          raw.ws.send(encodeHandshakeFrame({ type: 'auth', signature: toB64u(Buffer.alloc(64)) }));
        }
        assert.equal(await raw.closed, closeCodes.handshakeFailed);
      }
      // Still serving.
      const s = await connect(identity);
      await waitFor(() => s.frames.some((f) => f.type === 'welcome'));
      s.ws.close();
    },
  );

  test('before the handshake, any non-handshake frame closes the connection', limit, async () => {
    for (const frame of [
      { type: 'req', id: 'x', method: 'ping', timeoutMs: 1000, params: {} },
      { type: 'stream.data', stream: 'events', firstSeq: 1, count: 1 },
      { type: 'facts', facts: sampleFacts },
      { type: 'auth', signature: toB64u(Buffer.alloc(64)) },
    ]) {
      const raw = await rawSocket();
      raw.ws.send(Buffer.from(JSON.stringify(frame)));
      const code = await raw.closed;
      assert.ok(code === closeCodes.unexpected || code === closeCodes.malformed, `${frame.type} -> ${code}`);
    }
    const text = await rawSocket();
    text.ws.send('hello as text');
    assert.equal(await text.closed, closeCodes.malformed);
  });

  test(
    'a peer-chosen multibyte frame type cannot crash the controller (close reason is bounded)',
    limit,
    async () => {
      const raw = await rawSocket();
      raw.ws.send(Buffer.from(JSON.stringify({ type: '你'.repeat(60) })));
      assert.equal(await raw.closed, closeCodes.malformed);
      // Same through a sealed enroll-mode session, which needs no credentials.
      const enrolling = await new Promise<{ closed: Promise<number>; send: (b: Buffer) => void }>(
        (resolve, reject) => {
          openSession({
            controllerUrl: ctl.url,
            identity: generateSigningIdentity(),
            pin: ctl.fingerprint,
            mode: 'enroll',
            onFrame: () => {},
          }).then(({ ws, channel }) => {
            const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
            resolve({ closed, send: (b) => ws.send(channel.session.sealer.seal(b)) });
          }, reject);
        },
      );
      enrolling.send(
        encodeFrame({ type: 'enroll', token: 'x', facts: sampleFacts, ['ключ'.repeat(40)]: 1 } as never),
      );
      assert.equal(await enrolling.closed, closeCodes.malformed);
      const identity = generateSigningIdentity();
      await enroll(identity, await joinToken(ctl));
      const s = await connect(identity);
      await waitFor(() => s.frames.some((f) => f.type === 'welcome'));
      s.ws.close();
    },
  );

  test(
    'before the handshake a message above 4 KiB is refused, whatever the session limit',
    limit,
    async () => {
      const raw = await rawSocket();
      raw.ws.send(Buffer.alloc(8 * 1024, 0x20));
      assert.equal(await raw.closed, closeCodes.tooLarge);
    },
  );

  test('a revocation written by another controller is honoured despite the key cache', limit, async () => {
    const identity = generateSigningIdentity();
    const hostId = await enroll(identity, await joinToken(ctl));
    const first = await connect(identity); // caches the enrolled key
    await waitFor(() => first.frames.some((f) => f.type === 'welcome'));
    first.ws.close();
    await first.closed;
    // Another replica revokes it in the shared database; this gateway was not told.
    await createHostRepository(ctl.database.db).revoke(hostId, new Date());
    const again = await connect(identity).then(
      (s) => s.closed,
      (e: unknown) => e,
    );
    assert.ok(again === closeCodes.revoked || (again instanceof LinkClosed && again.fatal), String(again));
    assert.equal(ctl.gateway.isOnline(hostId), false);
  });

  test('a host revoked while not connected cannot start a session', limit, async () => {
    const identity = generateSigningIdentity();
    const hostId = await enroll(identity, await joinToken(ctl));
    assert.equal(ctl.gateway.disconnect(hostId, 'revoked'), false);
    const err = await connect(identity).then(
      (s) => s.closed,
      (e: unknown) => e,
    );
    assert.ok(
      (err instanceof LinkClosed && err.fatal) || err === closeCodes.revoked,
      `expected a refusal, got ${String(err)}`,
    );
    assert.equal(ctl.gateway.isOnline(hostId), false);
  });
});

describe('sealed session', () => {
  test('a replayed sealed frame closes the session; a forged one too', limit, async () => {
    const identity = generateSigningIdentity();
    await enroll(identity, await joinToken(ctl));
    const s = await connect(identity);
    await waitFor(() => s.frames.some((f) => f.type === 'welcome'));
    const sealed = s.channel.session.sealer.seal(encodeFrame({ type: 'facts', facts: sampleFacts }));
    s.ws.send(sealed);
    s.ws.send(sealed); // replay
    assert.equal(await s.closed, closeCodes.forged);

    const s2 = await connect(identity);
    await waitFor(() => s2.frames.some((f) => f.type === 'welcome'));
    const forged = s2.channel.session.sealer.seal(encodeFrame({ type: 'facts', facts: sampleFacts }));
    forged[3]! ^= 0xff;
    s2.ws.send(forged);
    assert.equal(await s2.closed, closeCodes.forged);
  });

  test('oversized, malformed and unknown frames close only that connection', limit, async () => {
    const a = generateSigningIdentity();
    const b = generateSigningIdentity();
    const hostB = await enroll(b, await joinToken(ctl));
    await enroll(a, await joinToken(ctl));
    const bystander = await connect(b);
    await waitFor(() => ctl.gateway.isOnline(hostB));

    const big = await connect(a);
    await waitFor(() => big.frames.some((f) => f.type === 'welcome'));
    big.ws.send(Buffer.alloc(300 * 1024)); // above maxPayload (256 KiB here)
    assert.equal(await big.closed, closeCodes.tooLarge);

    const malformed = await connect(a);
    await waitFor(() => malformed.frames.some((f) => f.type === 'welcome'));
    malformed.ws.send(malformed.channel.session.sealer.seal(Buffer.from('{"not":"a frame"}')));
    assert.equal(await malformed.closed, closeCodes.malformed);

    const unknown = await connect(a);
    await waitFor(() => unknown.frames.some((f) => f.type === 'welcome'));
    unknown.channel.send({ type: 'launch-missiles' } as never);
    assert.equal(await unknown.closed, closeCodes.malformed);

    const wrongDirection = await connect(a);
    await waitFor(() => wrongDirection.frames.some((f) => f.type === 'welcome'));
    wrongDirection.channel.send({ type: 'stream.ack', stream: 'events', seq: 1 });
    assert.equal(await wrongDirection.closed, closeCodes.unexpected);

    // The other agent was never disturbed.
    assert.equal(ctl.gateway.isOnline(hostB), true);
    assert.equal(bystander.ws.readyState, WebSocket.OPEN);
    bystander.ws.close();
  });

  test(
    'identity comes only from the handshake key: a frame naming another host is rejected',
    limit,
    async () => {
      const a = generateSigningIdentity();
      const b = generateSigningIdentity();
      const hostA = await enroll(a, await joinToken(ctl));
      const hostB = await enroll(b, await joinToken(ctl));
      const s = await connect(a);
      await waitFor(() => s.frames.some((f) => f.type === 'welcome'));
      // Strict schemas: a host id smuggled into a frame is a malformed frame.
      s.channel.send({ type: 'facts', facts: { ...sampleFacts, hostname: 'evil' }, hostId: hostB } as never);
      assert.equal(await s.closed, closeCodes.malformed);
      const s2 = await connect(a);
      await waitFor(() => s2.frames.some((f) => f.type === 'welcome'));
      s2.channel.send({ type: 'facts', facts: { ...sampleFacts, hostname: 'from-a' } });
      await waitFor(async () => (await ctl.services.hosts.get(hostA))?.facts?.hostname === 'from-a');
      assert.notEqual((await ctl.services.hosts.get(hostB))?.facts?.hostname, 'from-a');
      s2.ws.close();
    },
  );
});

describe('handshakes in progress are bounded', () => {
  let bounded: Ctl;
  before(async () => {
    bounded = await startTestController({
      env: {
        KEEL_TRUST_PROXY: 'true',
        KEEL_MAX_PENDING_HANDSHAKES: '5',
        KEEL_MAX_PENDING_HANDSHAKES_PER_ADDRESS: '3',
      },
    });
  });
  after(async () => {
    await bounded.close();
    removeDir(bounded.dataDir);
  });

  /** Opens an agent socket "from" an address (through the trusted proxy header); never says hello. */
  function dial(from: string): Promise<{ status: number; ws: WebSocket }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${bounded.port}/agent/v1`, {
        headers: { 'x-forwarded-for': `192.0.2.99, ${from}` },
      });
      ws.once('open', () => resolve({ status: 101, ws }));
      ws.once('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode ?? 0, ws });
        res.resume();
      });
      ws.once('error', reject);
    });
  }

  test('per address and in all; a finished or abandoned handshake frees its place', limit, async () => {
    const a = await Promise.all([dial('10.0.0.1'), dial('10.0.0.1'), dial('10.0.0.1')]);
    assert.deepEqual(
      a.map((d) => d.status),
      [101, 101, 101],
    );
    assert.equal((await dial('10.0.0.1')).status, 503, 'a fourth from the same address waits');
    // A refused peer that never closes its side is still cut off: the controller closes the socket
    // fully, so the peer's later writes fail (no half-open sockets piling up).
    const raw = connectTcp({ port: bounded.port, host: '127.0.0.1', allowHalfOpen: true });
    let answer = '';
    raw.on('data', (d: Buffer) => (answer += d.toString()));
    raw.on('error', () => {}); // EPIPE / ECONNRESET: what we wait for
    const rawClosed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.once('end', () => {
      const poke = setInterval(() => raw.writable && raw.write('x'), 50);
      raw.once('close', () => clearInterval(poke));
    });
    raw.write(
      'GET /agent/v1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        'X-Forwarded-For: 10.0.0.1\r\n\r\n',
    );
    await Promise.race([
      rawClosed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('refused socket left open')), 5_000)),
    ]);
    raw.destroy();
    assert.match(answer, /^HTTP\/1\.1 503 /);
    const b = await Promise.all([dial('10.0.0.2'), dial('10.0.0.2')]);
    assert.deepEqual(
      b.map((d) => d.status),
      [101, 101],
    );
    assert.equal(bounded.gateway.pendingHandshakes, 5);
    assert.equal((await dial('10.0.0.3')).status, 503, 'the total is reached');

    // One gives up: its place is free again.
    a[0]!.ws.terminate();
    await waitFor(() => bounded.gateway.pendingHandshakes === 4, 5_000, 'place freed');
    const again = await dial('10.0.0.3');
    assert.equal(again.status, 101);

    // An agent that completes its handshake does not hold a place: the real link still gets in
    // once the half-open sockets are gone, and is not counted afterwards.
    for (const d of [...a, ...b, again]) d.ws.terminate();
    await waitFor(() => bounded.gateway.pendingHandshakes === 0, 5_000, 'all freed');
    const { identity, hostId } = await enrollIdentity(bounded, 'bounded');
    const session = await openSession({
      controllerUrl: bounded.url,
      identity,
      pin: bounded.fingerprint,
      mode: 'connect',
      onFrame: () => {},
    });
    await waitFor(() => bounded.gateway.isOnline(hostId), 15_000, 'session live');
    assert.equal(bounded.gateway.pendingHandshakes, 0);
    session.ws.close();

    // An enrolling agent has only proved a key it may have just made: it keeps its place until
    // its connection ends, even after auth.
    const enrolling = await openSession({
      controllerUrl: bounded.url,
      identity: generateSigningIdentity(),
      pin: bounded.fingerprint,
      mode: 'enroll',
      onFrame: () => {},
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(bounded.gateway.pendingHandshakes, 1);
    enrolling.ws.terminate();
    await waitFor(() => bounded.gateway.pendingHandshakes === 0, 5_000, 'enrolling socket freed');
  });
});

describe('what a connection may cost before it is answered', () => {
  test(
    'bytes before welcome stay under the bound with parallel sessions; a refused session drops its buffer at once',
    limit,
    async () => {
      const identity = generateSigningIdentity();
      const hostId = await enroll(identity, await joinToken(ctl));
      const live = await connect(identity);
      await waitFor(() => ctl.gateway.isOnline(hostId));
      // The live session stops answering pings: newcomers with its key wait 2 s in the conflict
      // probe before their welcome, and meanwhile send stream data (120 KiB a frame).
      live.ws.pause();
      const body = encodeRecords([{ ts: 1, payload: Buffer.alloc(120 * 1024) }]);
      const newcomers = await Promise.all([1, 2, 3, 4].map(() => connect(identity)));
      let peak = 0;
      for (const s of newcomers) {
        for (let i = 0; i < 3; i++) {
          s.channel.send({ type: 'stream.data', stream: 'events', firstSeq: 1 + i, count: 1 }, body);
        }
      }
      const codes = await Promise.all(
        newcomers.map(async (s) => {
          const code = await s.closed;
          peak = Math.max(peak, ctl.gateway.bytesBeforeWelcome);
          return code;
        }),
      );
      // Each was cut off at its third frame (over 256 KiB before its welcome), not buffered.
      assert.deepEqual(codes, [4412, 4412, 4412, 4412]);
      assert.ok(peak <= 4 * 256 * 1024, `peak ${peak}`);
      await waitFor(() => ctl.gateway.bytesBeforeWelcome === 0, 5_000, 'buffers released');

      // A newcomer under the bound, refused because the live session answers again: its buffer
      // is dropped when it is refused.
      live.ws.resume();
      const clone = await connect(identity);
      clone.channel.send({ type: 'stream.data', stream: 'events', firstSeq: 1, count: 1 }, body);
      assert.equal(await clone.closed, closeCodes.conflict);
      assert.equal(ctl.gateway.bytesBeforeWelcome, 0);
      live.ws.close();
    },
  );

  test(
    'one enroll attempt per connection: a second enroll frame is refused, unprocessed',
    limit,
    async () => {
      const good = await joinToken(ctl);
      const session = await openSession({
        controllerUrl: ctl.url,
        identity: generateSigningIdentity(),
        pin: ctl.fingerprint,
        mode: 'enroll',
        onFrame: () => {},
      });
      const closed = new Promise<number>((resolve) => session.ws.once('close', (code) => resolve(code)));
      session.channel.send({ type: 'enroll', token: 'kjt_not-a-real-token', name: 'x', facts: sampleFacts });
      session.channel.send({ type: 'enroll', token: good, name: 'x', facts: sampleFacts });
      assert.equal(await closed, closeCodes.unexpected);
      // The second attempt never ran: its token is still good.
      assert.ok(await enroll(generateSigningIdentity(), good));
    },
  );

  test(
    'a host name with NUL is a clear typed error (not internal), and the token stays usable',
    limit,
    async () => {
      const token = await joinToken(ctl);
      const err = await redeemJoinToken({
        controllerUrl: ctl.url,
        identity: generateSigningIdentity(),
        pin: ctl.fingerprint,
        token,
        name: 'web\u00001',
        facts: sampleFacts,
      }).catch((e: unknown) => e);
      assert.match(String(err), /request\.invalid: Bad host name/);
      assert.ok(await enroll(generateSigningIdentity(), token));
    },
  );
});
