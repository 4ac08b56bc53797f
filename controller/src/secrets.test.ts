// Proves the master key seals and opens secrets at rest: AES-256-GCM values carry the prefix and
// the key id, a tampered value, a wrong context or an unknown key is refused with
// secret.unreadable, legacy plaintext is read as it is and flagged for re-sealing, retired keys
// still open (rotation), and the key comes from KEEL_MASTER_KEY or a 0600 file made at first start.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { KeelError } from '@keel/shared';
import { createSecretBox, loadSecretBox, masterKeyId, MasterKeyError, SEALED_PREFIX } from './secrets.ts';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keel-secrets-'));
  dirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const unreadable = (err: unknown) => err instanceof KeelError && err.code === 'secret.unreadable';

describe('secret box', () => {
  const key = randomBytes(32);
  const box = createSecretBox(key);

  test(
    'seals to a prefixed value naming the key, opens back, never twice the same',
    { timeout: 5000 },
    () => {
      const a = box.seal('JBSWY3DPEHPK3PXP', 'users.totp_secret:1');
      const b = box.seal('JBSWY3DPEHPK3PXP', 'users.totp_secret:1');
      assert.ok(a.startsWith(`${SEALED_PREFIX}${masterKeyId(key)}:`));
      assert.notEqual(a, b, 'a fresh nonce per seal');
      assert.ok(!a.includes('JBSWY3DPEHPK3PXP'));
      assert.equal(box.open(a, 'users.totp_secret:1'), 'JBSWY3DPEHPK3PXP');
      assert.equal(box.open(box.seal('', 'x'), 'x'), '');
      assert.equal(box.open(box.seal('ünïcødé ✓'), undefined), 'ünïcødé ✓');
      assert.equal(box.needsReseal(a), false);
    },
  );

  test(
    'a value moved to another row (context), tampered with or truncated does not open',
    { timeout: 5000 },
    () => {
      const sealed = box.seal('secret', 'users.totp_secret:1');
      assert.throws(() => box.open(sealed, 'users.totp_secret:2'), unreadable);
      assert.throws(() => box.open(sealed), unreadable);
      const raw = Buffer.from(sealed.split(':')[2]!, 'base64url');
      raw[14]! ^= 1;
      const flipped = `${sealed.split(':').slice(0, 2).join(':')}:${raw.toString('base64url')}`;
      assert.throws(() => box.open(flipped, 'users.totp_secret:1'), unreadable);
      assert.throws(() => box.open(sealed.slice(0, 20), 'users.totp_secret:1'), unreadable);
    },
  );

  test('legacy plaintext is read as it is and flagged for re-sealing', { timeout: 5000 }, () => {
    assert.equal(box.open('JBSWY3DPEHPK3PXP', 'ctx'), 'JBSWY3DPEHPK3PXP');
    assert.equal(box.needsReseal('JBSWY3DPEHPK3PXP'), true);
  });

  test(
    'rotation: a retired key still opens its values, which need re-sealing; an unknown key is refused',
    { timeout: 5000 },
    () => {
      const oldKey = randomBytes(32);
      const old = createSecretBox(oldKey);
      const sealedOld = old.seal('proxy-secret', 'c');
      const rotated = createSecretBox(randomBytes(32), [oldKey]);
      assert.equal(rotated.open(sealedOld, 'c'), 'proxy-secret');
      assert.equal(rotated.needsReseal(sealedOld), true);
      const resealed = rotated.seal(rotated.open(sealedOld, 'c'), 'c');
      assert.equal(rotated.needsReseal(resealed), false);
      assert.throws(
        () => box.open(sealedOld, 'c'),
        (err: unknown) => {
          assert.ok(unreadable(err));
          assert.match((err as Error).message, new RegExp(old.keyId));
          return true;
        },
      );
    },
  );
});

describe('loading the master key', () => {
  test(
    'first start makes <dataDir>/master.key (0600) and later starts read the same key',
    { timeout: 5000 },
    () => {
      const dir = tempDir();
      const first = loadSecretBox({ dataDir: dir, env: {} });
      assert.equal(first.source, 'generated');
      const file = path.join(dir, 'master.key');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64').length, 32);
      const again = loadSecretBox({ dataDir: dir, env: {} });
      assert.equal(again.source, 'file');
      assert.equal(again.keyId, first.keyId);
      assert.equal(again.open(first.seal('x', 'c'), 'c'), 'x');
    },
  );

  test(
    'KEEL_MASTER_KEY wins over the file; retired keys come from KEEL_MASTER_KEY_PREVIOUS or later file lines',
    { timeout: 5000 },
    () => {
      const dir = tempDir();
      const fileBox = loadSecretBox({ dataDir: dir, env: {} });
      const sealedByFile = fileBox.seal('old', 'c');
      const fileKey = readFileSync(path.join(dir, 'master.key'), 'utf8').trim();
      const newKey = randomBytes(32).toString('base64');
      const envBox = loadSecretBox({
        dataDir: dir,
        env: { KEEL_MASTER_KEY: newKey, KEEL_MASTER_KEY_PREVIOUS: fileKey },
      });
      assert.equal(envBox.source, 'env');
      assert.equal(envBox.keyId, masterKeyId(Buffer.from(newKey, 'base64')));
      assert.equal(envBox.open(sealedByFile, 'c'), 'old');
      assert.ok(envBox.needsReseal(sealedByFile));
      // Without the retired key the old value is unreadable.
      assert.throws(
        () => loadSecretBox({ dataDir: dir, env: { KEEL_MASTER_KEY: newKey } }).open(sealedByFile, 'c'),
        unreadable,
      );
      // File rotation: the new key on line 1, the old one below it.
      writeFileSync(path.join(dir, 'master.key'), `${newKey}\n${fileKey}\n`, { mode: 0o600 });
      const rotated = loadSecretBox({ dataDir: dir, env: {} });
      assert.equal(rotated.keyId, envBox.keyId);
      assert.equal(rotated.open(sealedByFile, 'c'), 'old');
    },
  );

  test(
    'a malformed env key, a short key and a key file others can read are refused',
    { timeout: 5000 },
    () => {
      const dir = tempDir();
      assert.throws(
        () => loadSecretBox({ dataDir: dir, env: { KEEL_MASTER_KEY: 'not base64!' } }),
        MasterKeyError,
      );
      assert.throws(
        () => loadSecretBox({ dataDir: dir, env: { KEEL_MASTER_KEY: randomBytes(16).toString('base64') } }),
        /KEEL_MASTER_KEY is not a base64 32-byte key/,
      );
      assert.throws(
        () =>
          loadSecretBox({
            dataDir: dir,
            env: { KEEL_MASTER_KEY: randomBytes(32).toString('base64'), KEEL_MASTER_KEY_PREVIOUS: 'abc' },
          }),
        /KEEL_MASTER_KEY_PREVIOUS \(entry 1\)/,
      );
      loadSecretBox({ dataDir: dir, env: {} });
      chmodSync(path.join(dir, 'master.key'), 0o644);
      assert.throws(() => loadSecretBox({ dataDir: dir, env: {} }), /readable by other users/);
    },
  );
});
