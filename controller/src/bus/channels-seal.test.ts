// Proves the routed channels' sealing never reuses a (key, nonce) pair: the nonce is the message's
// sequence number under a key of its own per topic (direction), channel and sender (a channel id
// sent twice, as by an open replayed and accepted twice, still gets a fresh key), and a message
// re-labelled to another channel, sequence number or topic, or a will read as a message, fails.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  channelMessageKey,
  openChannelMessage,
  readClearPrefix,
  replicaWill,
  sealChannelMessage,
  sealWithMessageKey,
} from './channels.ts';
import { channelTopic } from './topics.ts';

const key = randomBytes(32);
const toA = channelTopic('keel', 'lease-a');
const toB = channelTopic('keel', 'lease-b');
const ch = '0f7c9a2e-5a1e-4a8e-9f55-0c1d2e3f4a5b';

/** The ciphertext after the clear prefix, without the tag. */
function ciphertext(sealed: Buffer): Buffer {
  return sealed.subarray(readClearPrefix(sealed)!.at, sealed.length - 16);
}

function xor(a: Buffer, b: Buffer): Buffer {
  return Buffer.from(a.subarray(0, Math.min(a.length, b.length)).map((v, i) => v ^ b[i]!));
}

test('the nonce is the sequence number: one sender sealing one channel is deterministic per seq', () => {
  const salt = randomBytes(16);
  const messageKey = channelMessageKey(key, toA, ch, salt);
  const body = Buffer.from('keystroke');
  const first = sealWithMessageKey(messageKey, toA, salt, { t: 'data', ch, seq: 7 }, body);
  // Same key, same seq, same bytes: same message (no random nonce that could repeat by chance).
  assert.deepEqual(sealWithMessageKey(messageKey, toA, salt, { t: 'data', ch, seq: 7 }, body), first);
  const next = sealWithMessageKey(messageKey, toA, salt, { t: 'data', ch, seq: 8 }, body);
  assert.notDeepEqual(ciphertext(next), ciphertext(first));
  assert.deepEqual(readClearPrefix(first), { ch, salt, seq: 7, at: readClearPrefix(first)!.at });
  const opened = openChannelMessage(key, toA, first);
  assert.deepEqual(opened?.head, { t: 'data', ch, seq: 7 });
  assert.deepEqual(opened?.body, body);
});

test('another sender, direction or channel with the same seq gets another keystream', () => {
  const a = Buffer.from(JSON.stringify({ t: 'data' }) + 'A'.repeat(64));
  const b = Buffer.from(JSON.stringify({ t: 'data' }) + 'B'.repeat(64));
  const salt = randomBytes(16);
  const one = sealChannelMessage(key, toA, { t: 'data', ch, seq: 3 }, a, salt);
  const others = [
    sealChannelMessage(key, toA, { t: 'data', ch, seq: 3 }, b), // a second sender of ch (replayed open)
    sealChannelMessage(key, toB, { t: 'data', ch, seq: 3 }, b, salt), // the other direction
    sealChannelMessage(key, toA, { t: 'data', ch: `${ch}x`, seq: 3 }, b, salt), // another channel
  ];
  for (const other of others) {
    // Under a reused (key, nonce) the ciphertexts' XOR would be the plaintexts' XOR.
    assert.notDeepEqual(
      xor(ciphertext(one), ciphertext(other)),
      xor(a, b).subarray(0, ciphertext(one).length),
    );
  }
});

test('a message moved to another channel, seq or topic, or under another master key, does not open', () => {
  const salt = randomBytes(16);
  const sealed = sealChannelMessage(key, toA, { t: 'credit', ch, seq: 2, bytes: 10 }, undefined, salt);
  assert.ok(openChannelMessage(key, toA, sealed));
  assert.equal(openChannelMessage(key, toB, sealed), null, 'another topic');
  assert.equal(openChannelMessage(randomBytes(32), toA, sealed), null, 'another key');
  const prefix = readClearPrefix(sealed)!;
  const moved = Buffer.from(sealed);
  moved[2] = moved[2]! ^ 1; // the channel id's first byte
  assert.equal(openChannelMessage(key, toA, moved), null, 'another channel');
  const reseq = Buffer.from(sealed);
  reseq[prefix.at - 1] = reseq[prefix.at - 1]! ^ 1; // the sequence number's last byte
  assert.equal(openChannelMessage(key, toA, reseq), null, 'another seq');
  assert.equal(readClearPrefix(Buffer.from([9, 1, 2, 3])), null, 'not a channel message');
});

test("a replica's will is sealed under its own key: it never opens as a channel message", () => {
  const will = replicaWill(key, 'keel', 'bus-b');
  assert.equal(will.topic, 'keel/replicas/bus-b/gone');
  assert.equal(openChannelMessage(key, will.topic, will.payload), null);
});
