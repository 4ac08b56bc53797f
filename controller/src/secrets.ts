// Secrets at rest: one master key seals what the database must hold but must not show to whoever
// reads a dump of it (TOTP secrets, proxy secrets, notification channel credentials, per-host keys).
//
// The key is 32 random bytes, from KEEL_MASTER_KEY (base64) when set, or else from
// `<dataDir>/master.key` (0600, made at first start). Retired keys stay readable: listed in
// KEEL_MASTER_KEY_PREVIOUS (comma-separated base64) or on the key file's later lines. A value is
// sealed with AES-256-GCM (node:crypto) under a fresh 96-bit nonce and written as
//
//   keel1:<key id>:<base64url(nonce | ciphertext | tag)>
//
// where the key id is the first 8 hex digits of the key's SHA-256, so a value names the key that
// opens it. A value without the prefix is legacy plaintext: `open` returns it as it is and
// `needsReseal` says so, which lets every holder migrate its rows (and re-seal rows of a retired
// key after a rotation) at start. A `context` (e.g. `users.totp_secret:<user id>`) is bound in as
// associated data, so a sealed value copied into another row or column does not open.
// docs/security.md ("Secrets at rest") describes the key, its rotation and its backup.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '@keel/shared';

/** The prefix of a sealed value; a value without it is legacy plaintext. */
export const SEALED_PREFIX = 'keel1:';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** Seals and opens secrets at rest under the master key (and reads retired keys). */
export interface SecretBox {
  /** The current key's id (8 hex digits of its SHA-256): safe to log. */
  readonly keyId: string;
  /** Seals `plaintext`; `context` (optional) must be given again to open it. */
  seal(plaintext: string, context?: string): string;
  /** Opens a sealed value, or returns legacy plaintext as it is. Throws `secret.unreadable`. */
  open(value: string, context?: string): string;
  /** True when the value is plaintext or sealed under a retired key: write `seal(open(v))` back. */
  needsReseal(value: string): boolean;
  /**
   * A 32-byte key for one purpose, derived from the current master key (HKDF-SHA256, the purpose
   * as info): the same on every controller holding that key, and telling nothing of it.
   * @example box.deriveKey('keel.bus.events') // the fleet events' MAC key
   */
  deriveKey(purpose: string): Buffer;
}

/**
 * Re-seals at start the stored secrets of one holder that are plaintext (written before secrets
 * were sealed) or sealed under a retired key: each row's secret is opened and sealed again under
 * its context, and written back only if the row still holds what was read. Returns how many rows
 * were rewritten.
 * @example await resealStored(box, await repo.storedSecrets(), (r) => r.secret, (r) => `t.secret:${r.id}`, (r, v) => repo.resealSecret(r.id, r.secret, v))
 */
export async function resealStored<R>(
  box: Pick<SecretBox, 'needsReseal' | 'open' | 'seal'>,
  rows: readonly R[],
  secretOf: (row: R) => string,
  contextOf: (row: R) => string,
  write: (row: R, sealed: string) => Promise<boolean>,
): Promise<number> {
  let changed = 0;
  for (const row of rows) {
    const value = secretOf(row);
    if (!box.needsReseal(value)) continue;
    const context = contextOf(row);
    if (await write(row, box.seal(box.open(value, context), context))) changed++;
  }
  return changed;
}

/** Thrown when the master key cannot be loaded (bad env value, unsafe file). */
export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyError';
  }
}

/** The id a key is known by in sealed values: the first 8 hex digits of its SHA-256. */
export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

function decodeKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  // Buffer.from ignores what is not base64; a round trip catches a typo instead of a short key.
  if (key.length !== 32 || key.toString('base64').replace(/=+$/, '') !== trimmed.replace(/=+$/, '')) {
    throw new MasterKeyError(`${where} is not a base64 32-byte key (make one with: openssl rand -base64 32)`);
  }
  return key;
}

/**
 * A secret box over `current` that also opens values sealed under `previous` keys.
 *
 * @example const box = createSecretBox(randomBytes(32)); box.open(box.seal('s3cret', 'ctx'), 'ctx')
 */
export function createSecretBox(current: Buffer, previous: Buffer[] = []): SecretBox {
  if (current.length !== 32) throw new MasterKeyError('the master key must be 32 bytes');
  const keys = new Map<string, Buffer>();
  for (const key of [...previous, current]) keys.set(masterKeyId(key), key);
  const keyId = masterKeyId(current);
  const aad = (context: string | undefined) => Buffer.from(`keel-secret\0${context ?? ''}`, 'utf8');

  return {
    keyId,
    seal(plaintext, context) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad(context));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const sealed = Buffer.concat([nonce, body, cipher.getAuthTag()]);
      return `${SEALED_PREFIX}${keyId}:${sealed.toString('base64url')}`;
    },
    open(value, context) {
      if (!value.startsWith(SEALED_PREFIX)) return value;
      const rest = value.slice(SEALED_PREFIX.length);
      const colon = rest.indexOf(':');
      const id = rest.slice(0, colon);
      const key = colon > 0 ? keys.get(id) : undefined;
      if (!key) {
        throw new KeelError(
          'secret.unreadable',
          `A stored secret is sealed with master key ${id || '(none)'}, which this controller does not hold (set KEEL_MASTER_KEY / KEEL_MASTER_KEY_PREVIOUS; docs/security.md).`,
        );
      }
      const raw = Buffer.from(rest.slice(colon + 1), 'base64url');
      if (raw.length < NONCE_BYTES + TAG_BYTES) throw new KeelError('secret.unreadable');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, NONCE_BYTES), {
          authTagLength: TAG_BYTES,
        });
        decipher.setAAD(aad(context));
        decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
        return Buffer.concat([
          decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)),
          decipher.final(),
        ]).toString('utf8');
      } catch {
        throw new KeelError('secret.unreadable');
      }
    },
    needsReseal(value) {
      return !value.startsWith(`${SEALED_PREFIX}${keyId}:`);
    },
    deriveKey(purpose) {
      return Buffer.from(hkdfSync('sha256', current, Buffer.alloc(0), `keel-derived\0${purpose}`, 32));
    },
  };
}

/** Where the master key came from (for the start-up log line; never the key itself). */
export type MasterKeySource = 'env' | 'file' | 'generated';

/**
 * Loads the master key: KEEL_MASTER_KEY (base64, 32 bytes) when set, else `<dataDir>/master.key`
 * (first line the current key, later lines retired keys), made 0600 at first start. Retired keys
 * may also come from KEEL_MASTER_KEY_PREVIOUS (comma-separated). A key file others can read is
 * refused, as the controller key is.
 */
export function loadSecretBox(opts: {
  dataDir: string;
  env?: NodeJS.ProcessEnv;
}): SecretBox & { source: MasterKeySource } {
  const env = opts.env ?? process.env;
  const previous = (env.KEEL_MASTER_KEY_PREVIOUS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s, i) => decodeKey(s, `KEEL_MASTER_KEY_PREVIOUS (entry ${i + 1})`));
  if (env.KEEL_MASTER_KEY?.trim()) {
    return { ...createSecretBox(decodeKey(env.KEEL_MASTER_KEY, 'KEEL_MASTER_KEY'), previous), source: 'env' };
  }
  const file = join(opts.dataDir, 'master.key');
  let lines: string[];
  let source: MasterKeySource = 'file';
  try {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) {
      throw new MasterKeyError(
        `${file} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${file}`,
      );
    }
    lines = readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    if (lines.length === 0) throw new MasterKeyError(`${file} holds no key`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const key = randomBytes(32).toString('base64');
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${key}\n`, { mode: 0o600, flag: 'wx' });
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
    chmodSync(file, 0o600);
    lines = [key];
    source = 'generated';
  }
  const [current, ...retired] = lines.map((l, i) => decodeKey(l, `${file} (line ${i + 1})`));
  return { ...createSecretBox(current!, [...retired, ...previous]), source };
}
