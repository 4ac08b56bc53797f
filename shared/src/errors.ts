// The catalogue of stable error codes: one place that says what each code means and which HTTP
// status carries it. API bodies are always `{ error: { code, message } }`.

/** Every error code Keel emits, with its default message and HTTP status. */
export const errorCatalogue = {
  'request.invalid': { status: 400, message: 'The request is malformed.' },
  'request.too_large': { status: 413, message: 'The request body is too large.' },
  'request.unsupported_media_type': {
    status: 415,
    message: 'The request body must be JSON (Content-Type: application/json).',
  },
  'request.deadline_exceeded': { status: 504, message: 'The agent did not answer before the deadline.' },
  'request.unknown_method': { status: 400, message: 'The agent does not know this request method.' },
  'request.failed': { status: 502, message: 'The agent could not carry out the request.' },
  'request.disconnected': {
    status: 502,
    message: 'The agent disconnected before it answered; the request was not retried.',
  },
  'agent.bad_result': {
    status: 502,
    message: 'The agent answered with a malformed result; nothing was stored.',
  },
  'agent.unsupported': {
    status: 409,
    message: "This host's agent does not support this; upgrade the agent.",
  },
  'host.not_found': { status: 404, message: 'No such host.' },
  'host.offline': { status: 409, message: 'The host is offline.' },
  'host.revoked': { status: 409, message: 'The host is revoked.' },
  'process.not_found': { status: 404, message: 'No such process on this host.' },
  'recording.not_found': { status: 404, message: 'No such recording.' },
  'job.not_found': { status: 404, message: 'No such job run.' },
  'job.not_running': { status: 409, message: 'The job run is not running.' },
  'job.no_hosts': { status: 400, message: 'The selection names no host you may run jobs on.' },
  'job.timeout': { status: 504, message: 'The command ran past its timeout; its process group was killed.' },
  'job.cancelled': { status: 409, message: 'The job run was cancelled.' },
  'job.spawn_failed': { status: 502, message: 'The command could not be started on the host.' },
  'schedule.not_found': { status: 404, message: 'No such schedule.' },
  'schedule.invalid_cron': { status: 400, message: 'The cron expression or time zone is not valid.' },
  'proxy.node_not_found': { status: 404, message: 'No such proxy node on this host.' },
  'proxy.node_exists': { status: 409, message: 'This host already has a proxy node of this name.' },
  'proxy.generation_not_found': { status: 404, message: 'No such configuration generation.' },
  'proxy.rollout_not_found': { status: 404, message: 'No such rollout.' },
  'proxy.rollout_state': { status: 409, message: 'The rollout is not in a state that allows this.' },
  'proxy.user_not_found': { status: 404, message: 'No such proxy user.' },
  'proxy.user_exists': { status: 409, message: 'A proxy user with this name exists.' },
  'proxy.subscription_not_found': { status: 404, message: 'No such subscription.' },
  'request.rate_limited': { status: 429, message: 'Too many requests; try again later.' },
  'process.not_running': { status: 409, message: 'The process is not running.' },
  'process.stdin_full': {
    status: 409,
    message: 'The process is not reading its input; the line was not sent.',
  },
  'template.not_found': { status: 404, message: 'No such process template.' },
  'template.exists': { status: 409, message: 'A process template with this id exists.' },
  'template.built_in': { status: 409, message: 'Built-in templates cannot be changed or deleted.' },
  'template.invalid': { status: 400, message: 'The template or its values are not valid.' },
  'search.busy': {
    status: 429,
    message: 'As many log searches as the controller runs at once are running; try again in a few seconds.',
  },
  'search.invalid_pattern': {
    status: 400,
    message: 'The search pattern is not a usable regular expression.',
  },
  'config.stale_generation': {
    status: 409,
    message: 'A newer (or the same) configuration generation is already applied on this host.',
  },
  'config.invalid': { status: 422, message: 'The proxy refused the configuration; nothing was changed.' },
  'config.unhealthy': {
    status: 502,
    message: 'The proxy failed its health check after the change; the previous configuration was restored.',
  },
  'config.apply_failed': { status: 502, message: 'The configuration could not be applied.' },
  'config.not_found': { status: 404, message: 'No such proxy instance on this host.' },
  'enroll.token_invalid': { status: 401, message: 'The join token is not valid.' },
  'enroll.token_expired': { status: 401, message: 'The join token has expired.' },
  'enroll.token_used': { status: 401, message: 'The join token has already been used.' },
  'enroll.key_exists': { status: 409, message: 'This agent key is already enrolled.' },
  'join_token.not_found': { status: 404, message: 'No such join token.' },
  'auth.required': { status: 401, message: 'Sign in first.' },
  'auth.invalid_credentials': { status: 401, message: 'Wrong username or password.' },
  'auth.locked': { status: 429, message: 'Too many failed sign-ins; try again later.' },
  'auth.csrf': { status: 403, message: 'Missing or wrong CSRF token.' },
  'auth.forbidden': { status: 403, message: 'Your role does not allow this.' },
  'user.exists': { status: 409, message: 'A user with this name already exists.' },
  'user.not_found': { status: 404, message: 'No such user.' },
  'user.weak_password': { status: 400, message: 'The password does not meet the password policy.' },
  'user.last_owner': { status: 409, message: 'The last owner cannot be removed or demoted.' },
  'group.not_found': { status: 404, message: 'No such host group.' },
  'check.not_found': { status: 404, message: 'No such service check.' },
  'alert.rule_not_found': { status: 404, message: 'No such alert rule.' },
  'alert.not_found': { status: 404, message: 'No such alert.' },
  'alert.silence_not_found': { status: 404, message: 'No such silence.' },
  'alert.maintenance_not_found': { status: 404, message: 'No such maintenance window.' },
  'notification.channel_not_found': { status: 404, message: 'No such notification channel.' },
  'notification.failed': { status: 502, message: 'The notification could not be delivered.' },
  'group.exists': { status: 409, message: 'A host group with this name already exists.' },
  'grant.not_found': { status: 404, message: 'No such grant.' },
  'api_token.not_found': { status: 404, message: 'No such API token.' },
  'session.not_found': { status: 404, message: 'No such session.' },
  'auth.two_factor_required': {
    status: 403,
    message: 'Finish two-factor sign-in (or enroll two-factor sign-in) first.',
  },
  'auth.invalid_code': { status: 401, message: 'Wrong or already used two-factor code.' },
  'two_factor.not_enrolled': { status: 409, message: 'Two-factor sign-in is not set up for this user.' },
  'wallet.disabled': { status: 403, message: 'Wallet sign-in is off on this controller.' },
  'wallet.invalid_message': {
    status: 400,
    message: 'Not an EIP-4361 (Sign-In with Ethereum) message or a TON ton_proof.',
  },
  'wallet.domain_mismatch': { status: 401, message: 'The message was written for another site.' },
  'wallet.chain_not_allowed': {
    status: 401,
    message: 'The message names a chain this controller does not accept.',
  },
  'wallet.expired': { status: 401, message: 'The message is expired or not valid yet.' },
  'wallet.bad_signature': {
    status: 401,
    message: 'The signature does not match the message and its address.',
  },
  'wallet.nonce_invalid': {
    status: 401,
    message: 'The nonce is unknown, expired or already used; ask for a new one.',
  },
  'wallet.nonce_limit': {
    status: 429,
    message: 'Too many sign-in nonces outstanding; use one or wait a few minutes.',
  },
  'wallet.not_linked': { status: 401, message: 'This wallet is not linked to any user.' },
  'wallet.linked': { status: 409, message: 'This wallet is already linked to a user.' },
  'wallet.not_found': { status: 404, message: 'No such linked wallet.' },
  'wallet.address_mismatch': {
    status: 401,
    message: "The address is not the wallet's: it does not match its StateInit or public key.",
  },
  'wallet.unsupported_wallet': {
    status: 400,
    message: 'Not a known TON wallet contract (wallet v3r2, v4r2 and v5r1 are accepted).',
  },
  'secret.unreadable': {
    status: 500,
    message: 'A stored secret could not be opened with the master key (docs/security.md, Secrets at rest).',
  },
  'handshake.failed': { status: 401, message: 'The handshake failed.' },
  'handshake.pin_mismatch': {
    status: 401,
    message: 'The controller key does not match the pinned fingerprint.',
  },
  'handshake.unknown_agent': { status: 401, message: 'This agent key is not enrolled.' },
  'handshake.revoked': { status: 401, message: 'This agent has been revoked.' },
  'handshake.version': { status: 426, message: 'No protocol version in common.' },
  'frame.malformed': { status: 400, message: 'The frame is malformed.' },
  'frame.unexpected': { status: 400, message: 'This frame is not allowed here.' },
  'frame.forged': { status: 400, message: 'The frame failed authentication.' },
  'stream.invalid': { status: 400, message: 'The stream batch is invalid.' },
  'channel.unknown_kind': { status: 400, message: 'No such channel kind.' },
  'channel.ticket_invalid': {
    status: 401,
    message: 'The channel ticket is unknown, expired or already used.',
  },
  'channel.origin': { status: 403, message: 'Channel sockets are only opened from the console origin.' },
  'channel.limit': { status: 429, message: 'Too many channels are open on this host.' },
  'channel.refused': { status: 502, message: 'The agent refused to open the channel.' },
  'upgrade.unsupported': {
    status: 409,
    message:
      'This agent cannot upgrade itself: it does not run from an installed release under the keel-agent launcher (install it with install.sh).',
  },
  'upgrade.checksum_mismatch': {
    status: 502,
    message: 'The downloaded agent bundle does not match its SHA-256; nothing was installed.',
  },
  'upgrade.failed': {
    status: 502,
    message: 'The agent could not prepare the new release; nothing was switched.',
  },
  'upgrade.busy': { status: 409, message: 'An upgrade of this agent is already in progress.' },
  'upgrade.bundle_not_found': {
    status: 404,
    message: 'This controller holds no agent bundle of that version.',
  },
  'upgrade.rollout_not_found': { status: 404, message: 'No such agent rollout.' },
  'upgrade.rollout_state': { status: 409, message: 'The agent rollout is not in a state that allows this.' },
  'upgrade.rollout_active': {
    status: 409,
    message: 'Another agent rollout is running or paused; finish or cancel it first.',
  },
  not_found: { status: 404, message: 'Not found.' },
  internal: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; message: string }>;

/** A stable error code from the catalogue. */
export type ErrorCode = keyof typeof errorCatalogue;

/** An error with a stable code and a human message, safe to show to a user or send to a peer. */
export class KeelError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? errorCatalogue[code].message);
    this.name = 'KeelError';
    this.code = code;
  }
  /** HTTP status for this error's code. */
  get status(): number {
    return errorCatalogue[this.code].status;
  }
  /** The wire/API shape: `{ code, message }`. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** True when `code` is a known catalogue code (for codes that arrive from a peer). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(errorCatalogue, code);
}
