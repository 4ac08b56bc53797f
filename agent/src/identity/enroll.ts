// Enrolling a state dir with a controller: the agent's identity made (or loaded), the host's facts
// collected, the join token redeemed once the controller's key matched the pin, the enrollment
// saved. `keel-agent enroll` (main.ts) runs it; so do the tests' fixtures (test/helpers/fleet.ts
// enrollHere), in their own process, which spares them a `keel-agent enroll` process start.
import { hostname } from 'node:os';
import { collectFacts } from '../facts/index.ts';
import { redeemJoinToken } from '../link/connection.ts';
import { loadOrCreateIdentity, saveEnrollment } from './index.ts';

/**
 * The join token was not redeemed, or the enrollment not saved: `cause` says why (a LinkClosed for
 * a network error or a pin mismatch, else the controller's refusal or the file system's error).
 */
export class EnrollFailed extends Error {
  constructor(cause: unknown) {
    super(`enroll failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'EnrollFailed';
  }
}

/**
 * Enrolls `stateDir` and resolves with the host id. Rejects with EnrollFailed once the controller
 * was asked; a state dir that cannot hold an identity rejects before, with its own error.
 * @example const hostId = await enrollHost({ controllerUrl, token, pin, stateDir: '/var/lib/keel-agent' });
 */
export async function enrollHost(opts: {
  controllerUrl: string;
  token: string;
  /** The controller's key fingerprint (`sha256:…`), checked before the token is sent. */
  pin: string;
  /** The host's name; default this machine's hostname. */
  name?: string;
  stateDir: string;
}): Promise<string> {
  const identity = await loadOrCreateIdentity(opts.stateDir);
  const facts = await collectFacts();
  try {
    const hostId = await redeemJoinToken({
      controllerUrl: opts.controllerUrl,
      identity,
      pin: opts.pin,
      token: opts.token,
      name: opts.name ?? hostname(),
      facts,
    });
    await saveEnrollment(opts.stateDir, {
      controllerUrl: opts.controllerUrl,
      controllerPin: opts.pin,
      hostId,
      enrolledAt: new Date().toISOString(),
    });
    return hostId;
  } catch (err) {
    throw new EnrollFailed(err);
  }
}
