// The controller's own ed25519 identity: made once, kept in `<dataDir>/controller.key` (0600),
// never sent anywhere. Agents pin its fingerprint at enrollment.
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  renameSync,
  openSync,
  fsyncSync,
  closeSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { keyFingerprint, signingIdentityFromSeed, type SigningIdentity } from '@keel/shared';
import { secureDataDir } from './config/data-dir.ts';

/** Loads the controller key from the data dir, creating it on first start; tightens the dir's modes. */
export function loadControllerIdentity(dataDir: string): SigningIdentity & { fingerprint: string } {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'controller.key');
  let seed: Buffer;
  try {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) {
      throw new Error(
        `${file} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${file}`,
      );
    }
    seed = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
    if (seed.length !== 32) throw new Error(`${file} does not hold a 32-byte ed25519 seed`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    seed = randomBytes(32);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${seed.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
    chmodSync(file, 0o600);
  }
  // The key checked (a key others could read is refused above, not quietly fixed: it may have
  // leaked), the rest of the data dir is tightened whatever the database driver.
  secureDataDir(dataDir);
  const identity = signingIdentityFromSeed(seed);
  return { ...identity, fingerprint: keyFingerprint(identity.publicKey) };
}
