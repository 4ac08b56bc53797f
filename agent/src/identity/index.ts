// The agent's identity on disk: its ed25519 key pair (made on first start; the private key never
// leaves the host) and its enrollment (which controller it belongs to, pinned by key fingerprint).
//
//   <stateDir>/            mode 0700 when we create it
//   <stateDir>/agent.key   PKCS#8 PEM, mode 0600, refused (like ssh does) when others can read it
//   <stateDir>/enrollment.json
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { fromB64u, KEY_BYTES, rawPublicKey, toB64u } from '@keel/shared';

/** The fingerprint `keel-agent identity` prints (from here, so the CLI needs no import() of the whole protocol package). */
export { keyFingerprint } from '@keel/shared';

export const KEY_FILE = 'agent.key';
export const ENROLLMENT_FILE = 'enrollment.json';

/** The agent's static ed25519 identity (usable wherever shared's `SigningIdentity` is expected). */
export interface AgentIdentity {
  /** Raw 32-byte public key. */
  publicKey: Buffer;
  privateKey: KeyObject;
  /** The public key as base64url (no padding), the form the controller stores. */
  publicKeyB64: string;
}

/** A problem with the agent's own files that the operator has to fix; the message says how. */
export class IdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityError';
  }
}

/**
 * Loads the agent's key from `<stateDir>/agent.key`, making one on first start. Refuses a key file
 * that is not private to its owner, as ssh does.
 *
 * @example
 * const identity = await loadOrCreateIdentity('/var/lib/keel-agent');
 * console.log(identity.publicKeyB64);
 */
export async function loadOrCreateIdentity(stateDir: string): Promise<AgentIdentity> {
  ensureStateDir(stateDir);
  const path = join(stateDir, KEY_FILE);
  let privateKey = readKey(path);
  if (!privateKey) {
    const { privateKey: fresh } = generateKeyPairSync('ed25519');
    const pem = fresh.export({ format: 'pem', type: 'pkcs8' }).toString();
    // Written aside at 0600 and linked into place: the key file never exists half-written or
    // readable by others, and of two agents starting at once, one key wins and both use it.
    if (publishFile(stateDir, KEY_FILE, pem, { replace: false })) privateKey = fresh;
    else privateKey = readKey(path);
    if (!privateKey) throw new IdentityError(`${path} vanished while it was being created`);
  }
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { publicKey, privateKey, publicKeyB64: toB64u(publicKey) };
}

/** Which controller this agent belongs to, written by `keel-agent enroll`. */
export const enrollmentSchema = z.object({
  /** Where the agent dials, e.g. `wss://keel.example.com`. */
  controllerUrl: z.url({ protocol: /^(wss?|https?)$/ }),
  /** Fingerprint of the controller's key from the install command: `sha256:` + base64url(SHA-256). */
  controllerPin: z
    .string()
    .regex(/^sha256:[A-Za-z0-9_-]{43}$/, 'must be sha256: and 43 base64url characters'),
  /** The controller's raw ed25519 public key (base64url), once known. */
  controllerKey: z
    .string()
    .refine((s) => fromB64u(s, KEY_BYTES) !== null, 'must be 32 bytes in base64url')
    .optional(),
  /** The host id the controller gave this agent. */
  hostId: z.string().min(1).max(128),
  /** When the agent enrolled (ISO 8601). */
  enrolledAt: z.iso.datetime({ offset: true }),
});

export type Enrollment = z.infer<typeof enrollmentSchema>;

/** The saved enrollment, or null when the agent has not enrolled. Throws a clear error when the file is damaged. */
export async function loadEnrollment(stateDir: string): Promise<Enrollment | null> {
  const path = join(stateDir, ENROLLMENT_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new IdentityError(
      `${path} is not valid JSON (${(err as Error).message}); restore it or enroll again with keel-agent enroll`,
    );
  }
  const parsed = enrollmentSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new IdentityError(
      `${path} is damaged (${problems}); restore it or enroll again with keel-agent enroll`,
    );
  }
  return parsed.data;
}

/** Saves the enrollment atomically (mode 0600); validates it first. */
export async function saveEnrollment(stateDir: string, enrollment: Enrollment): Promise<void> {
  const valid = enrollmentSchema.parse(enrollment);
  ensureStateDir(stateDir);
  publishFile(stateDir, ENROLLMENT_FILE, `${JSON.stringify(valid, null, 2)}\n`, { replace: true });
}

/** Creates the state dir 0700; refuses one that others can write to (they could swap our key). */
function ensureStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const st = statSync(stateDir);
  if (!st.isDirectory()) throw new IdentityError(`${stateDir} is not a directory`);
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new IdentityError(
      `state directory ${stateDir} is writable by group or others (mode ${octal(st.mode)}); ` +
        `run: chmod go-w ${stateDir}`,
    );
  }
}

/** Reads the private key; null when there is none. Refuses a key others can read. */
function readKey(path: string): KeyObject | null {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (!st.isFile()) throw new IdentityError(`${path} must be a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new IdentityError(
      `permissions ${octal(st.mode)} for ${path} are too open: the agent's private key must not be ` +
        `accessible by others; run: chmod 600 ${path}`,
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new IdentityError(`${path} is owned by uid ${st.uid}, not by the agent's user (uid ${uid})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (err) {
    throw new IdentityError(`${path} is not a readable private key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new IdentityError(`${path} holds a ${key.asymmetricKeyType} key; the agent needs ed25519`);
  }
  return key;
}

/**
 * Writes `name` in `dir` atomically with mode 0600: a fresh temp file (created 0600, never wider),
 * fsync, then rename over (`replace`) or link (fails if `name` exists), then fsync of the dir.
 * Returns false when `replace` is off and the file already existed.
 */
function publishFile(dir: string, name: string, content: string, opts: { replace: boolean }): boolean {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  const target = join(dir, name);
  let published = true;
  try {
    if (opts.replace) renameSync(tmp, target);
    else linkSync(tmp, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      unlinkSync(tmp);
      throw err;
    }
    published = false;
  }
  if (!opts.replace) unlinkSync(tmp);
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return published;
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}
