// Wallet sign-in (EIP-4361, Sign-In with Ethereum), off until an admin turns it on. A user links
// an Ethereum address from their account (password re-entered, and a message signed by the
// wallet); that address may then sign in instead of the password. Every message must carry a nonce
// this controller handed out (single use, 5 minutes, stored), name this controller's host as its
// domain and its origin as its URI, an allowed chain id, and be inside its time bounds; the
// signature is recovered locally (siwe.ts). A TON wallet is the second kind: it signs a TON Connect
// ton_proof whose payload is such a nonce, for this controller's host, within the nonce lifetime;
// ton-proof.ts checks it (ed25519, and the address against the wallet's StateInit). A wallet
// replaces the password, not the second factor: a user with TOTP on still owes a code after a
// wallet sign-in. docs/access.md, "Wallet sign-in".
import { randomBytes } from 'node:crypto';
import { KeelError } from '@keel/shared';
import type { NoncePurpose, WalletRow, WalletsRepository } from '../repositories/wallets.ts';
import type { UserRow, UsersRepository } from '../repositories/users.ts';
import type { AuditService } from './audit.ts';
import {
  formatSiweMessage,
  parseSiweMessage,
  recoverPersonalSigner,
  toChecksumAddress,
  type SiweMessage,
} from './siwe.ts';
import { parseTonAddress, rawTonAddress, verifyTonProof, type TonProofInput } from './ton-proof.ts';

export type { TonProofInput };

/** Which kind of wallet an address is: Ethereum (`0x…`) or TON (`<workchain>:<hex>`). */
export const walletKind = (address: string): 'ethereum' | 'ton' =>
  address.startsWith('0x') ? 'ethereum' : 'ton';

/** Wallet sign-in limits. */
export const walletPolicy = {
  /** How long a nonce may be used after it is handed out. */
  nonceTtlMs: 5 * 60 * 1000,
  /** Live nonces one client address may hold (a sign-in page asks for one at a time). */
  maxNoncesPerAddress: 20,
  /** Live nonces in all (bounds the table whatever the number of addresses). */
  maxNonces: 50_000,
  /** Clock difference allowed between the wallet's "Issued At"/"Not Before" and ours. */
  clockSkewMs: 60 * 1000,
};

/** A linked wallet as the API shows it. */
export interface WalletView {
  kind: 'ethereum' | 'ton';
  address: string;
  chainId: number;
  createdAt: string;
  lastUsedAt: string | null;
}

const view = (w: WalletRow): WalletView => ({
  kind: walletKind(w.address),
  address: w.address,
  chainId: w.chainId,
  createdAt: w.createdAt.toISOString(),
  lastUsedAt: w.lastUsedAt?.toISOString() ?? null,
});

export interface WalletsServiceDeps {
  wallets: WalletsRepository;
  users: UsersRepository;
  audit: AuditService;
  /** The console's public URL: its host is the domain, its origin the URI, a message must name. */
  publicUrl: string;
  now?: () => Date;
  policy?: Partial<typeof walletPolicy>;
}

/** What a client needs to write the message a wallet signs. */
export interface WalletChallenge {
  nonce: string;
  domain: string;
  uri: string;
  version: '1';
  chainIds: number[];
  statement: string;
  issuedAt: string;
  expiresAt: string;
  /** The whole message for `address`, ready to sign, when the caller named its address. */
  message?: string;
}

/** Wallet linking, sign-in checks and the policy. */
export function createWalletsService(deps: WalletsServiceDeps) {
  const { wallets, users, audit } = deps;
  const now = deps.now ?? (() => new Date());
  const limits = { ...walletPolicy, ...deps.policy };
  const origin = new URL(deps.publicUrl);

  async function requireEnabled(): Promise<{ enabled: boolean; chainIds: number[] }> {
    const policy = await wallets.policy();
    if (!policy.enabled) throw new KeelError('wallet.disabled');
    return policy;
  }

  /**
   * Checks a signed message for `purpose` and uses its nonce; answers the signer's address (lower
   * case). Throws a `wallet.*` error naming what failed.
   */
  async function verify(
    text: string,
    signature: string,
    purpose: NoncePurpose,
    userId: string | null,
  ): Promise<{ address: string; message: SiweMessage }> {
    const message = parseSiweMessage(text);
    const policy = await requireEnabled();
    if (message.domain.toLowerCase() !== origin.host.toLowerCase()) {
      throw new KeelError(
        'wallet.domain_mismatch',
        `The message is for ${message.domain}, not ${origin.host}.`,
      );
    }
    if (message.scheme !== undefined && `${message.scheme}:` !== origin.protocol) {
      throw new KeelError(
        'wallet.domain_mismatch',
        `The message is for ${message.scheme}://, not ${origin.protocol}//.`,
      );
    }
    if (new URL(message.uri).origin !== origin.origin) {
      throw new KeelError('wallet.domain_mismatch', `The message URI is not on ${origin.origin}.`);
    }
    if (!policy.chainIds.includes(message.chainId)) {
      throw new KeelError('wallet.chain_not_allowed', `Chain ${message.chainId} is not accepted here.`);
    }
    const t = now().getTime();
    if (Date.parse(message.issuedAt) > t + limits.clockSkewMs) {
      throw new KeelError('wallet.expired', 'The message was issued in the future.');
    }
    if (Date.parse(message.issuedAt) < t - limits.nonceTtlMs - limits.clockSkewMs) {
      throw new KeelError('wallet.expired', 'The message was issued too long ago.');
    }
    if (message.expirationTime !== undefined && Date.parse(message.expirationTime) <= t) {
      throw new KeelError('wallet.expired', 'The message has expired.');
    }
    if (message.notBefore !== undefined && Date.parse(message.notBefore) > t + limits.clockSkewMs) {
      throw new KeelError('wallet.expired', 'The message is not valid yet.');
    }
    const signer = recoverPersonalSigner(text, signature);
    if (signer === null || signer !== message.address.toLowerCase())
      throw new KeelError('wallet.bad_signature');
    // Last: only a message that passed every other check uses its nonce up.
    if (!(await wallets.consumeNonce(message.nonce, purpose, userId, now()))) {
      throw new KeelError('wallet.nonce_invalid');
    }
    return { address: signer, message };
  }

  /**
   * Checks a TON ton_proof for `purpose` and uses its nonce (the proof's payload); answers the
   * wallet's raw address and network. Throws a `wallet.*` error naming what failed.
   */
  async function verifyTon(
    input: TonProofInput,
    purpose: NoncePurpose,
    userId: string | null,
  ): Promise<{ address: string; chainId: number }> {
    await requireEnabled();
    const proof = verifyTonProof(input, {
      domain: origin.host,
      now: now(),
      maxAgeMs: limits.nonceTtlMs,
      clockSkewMs: limits.clockSkewMs,
    });
    // Last, as for SIWE: only a proof that passed every other check uses its nonce up.
    if (!(await wallets.consumeNonce(proof.payload, purpose, userId, now()))) {
      throw new KeelError('wallet.nonce_invalid');
    }
    return { address: proof.address, chainId: proof.chainId };
  }

  async function signedInUser(address: string): Promise<{ user: UserRow; address: string }> {
    const wallet = await wallets.find(address);
    const user = wallet ? await users.findById(wallet.userId) : null;
    if (!wallet || !user) throw new KeelError('wallet.not_linked');
    await wallets.touch(address, now());
    return { user, address };
  }

  async function linkVerified(
    userId: string,
    found: { address: string; chainId: number },
    ip: string | null,
  ): Promise<WalletView> {
    const { address, chainId } = found;
    const linked = await wallets.link({ address, userId, chainId, createdAt: now() });
    if (!linked) throw new KeelError('wallet.linked');
    await audit.record(
      userId,
      'wallet.link',
      `user:${userId}`,
      { kind: walletKind(address), address, chainId },
      ip,
    );
    const row = await wallets.find(address);
    return view(row!);
  }

  return {
    async policy(): Promise<{ enabled: boolean; chainIds: number[] }> {
      return wallets.policy();
    },

    async setPolicy(
      by: { id: string; ip: string | null },
      input: { enabled: boolean; chainIds: number[] },
    ): Promise<{ enabled: boolean; chainIds: number[] }> {
      const chainIds = [...new Set(input.chainIds)];
      if (chainIds.length === 0) throw new KeelError('request.invalid', 'Name at least one chain id.');
      await wallets.setPolicy(input.enabled, chainIds, now());
      await audit.record(by.id, 'wallet.policy', null, { enabled: input.enabled, chainIds }, by.ip);
      return { enabled: input.enabled, chainIds };
    },

    /**
     * A nonce and what the message must say. `login` nonces are for anyone (bounded per client
     * address and in all); `link` nonces belong to the signed-in user who asked.
     */
    async challenge(
      purpose: NoncePurpose,
      user: { id: string; username: string } | null,
      ip: string | null,
      forWallet?: { address: string; chainId?: number },
    ) {
      const policy = await requireEnabled();
      const t = now();
      const count = await wallets.sweepAndCount(ip, t);
      if (count.fromIp >= limits.maxNoncesPerAddress || count.total >= limits.maxNonces) {
        throw new KeelError('wallet.nonce_limit');
      }
      const nonce = randomBytes(16).toString('hex');
      const expiresAt = new Date(t.getTime() + limits.nonceTtlMs);
      await wallets.createNonce({ nonce, purpose, userId: user?.id ?? null, ip, expiresAt });
      const challenge: WalletChallenge = {
        nonce,
        domain: origin.host,
        uri: origin.origin,
        version: '1',
        chainIds: policy.chainIds,
        statement:
          purpose === 'login'
            ? `Sign in to Keel at ${origin.host}.`
            : `Link this wallet to the Keel account ${user?.username ?? ''} at ${origin.host}.`,
        issuedAt: t.toISOString(),
        expiresAt: expiresAt.toISOString(),
      };
      if (forWallet) {
        const chainId = forWallet.chainId ?? policy.chainIds[0]!;
        if (!policy.chainIds.includes(chainId)) {
          throw new KeelError('wallet.chain_not_allowed', `Chain ${chainId} is not accepted here.`);
        }
        challenge.message = formatSiweMessage({
          domain: challenge.domain,
          address: toChecksumAddress(forWallet.address),
          statement: challenge.statement,
          uri: challenge.uri,
          version: '1',
          chainId,
          nonce,
          issuedAt: challenge.issuedAt,
        });
      }
      return challenge;
    },

    /** The address a message claims (lower case), or null: keys the sign-in throttle before checks. */
    claimedAddress(text: string): string | null {
      try {
        return parseSiweMessage(text).address.toLowerCase();
      } catch {
        return null;
      }
    },

    /**
     * Checks a sign-in message and answers the user its wallet is linked to. Throws a `wallet.*`
     * error (`wallet.not_linked` when the signature is good but no user has the address).
     */
    async signIn(text: string, signature: string): Promise<{ user: UserRow; address: string }> {
      const { address } = await verify(text, signature, 'login', null);
      return signedInUser(address);
    },

    /** The raw TON address a proof claims, or null: keys the sign-in throttle before checks. */
    claimedTonAddress(input: TonProofInput): string | null {
      const address = parseTonAddress(input.address);
      return address ? rawTonAddress(address) : null;
    },

    /** Checks a TON sign-in proof and answers the user its wallet is linked to (as signIn). */
    async signInTon(input: TonProofInput): Promise<{ user: UserRow; address: string }> {
      const { address } = await verifyTon(input, 'login', null);
      return signedInUser(address);
    },

    /** Links the wallet that signed `text` to `userId` (the caller checked the password). */
    async link(userId: string, text: string, signature: string, ip: string | null): Promise<WalletView> {
      const { address, message } = await verify(text, signature, 'link', userId);
      return linkVerified(userId, { address, chainId: message.chainId }, ip);
    },

    /** Links the TON wallet that signed `input` to `userId` (the caller checked the password). */
    async linkTon(userId: string, input: TonProofInput, ip: string | null): Promise<WalletView> {
      return linkVerified(userId, await verifyTon(input, 'link', userId), ip);
    },

    /** Unlinks one of a user's wallets (by the user or an admin). */
    async unlink(by: { id: string; ip: string | null }, userId: string, address: string): Promise<void> {
      const lower = address.toLowerCase();
      if (!(await wallets.unlink(userId, lower))) throw new KeelError('wallet.not_found');
      await audit.record(by.id, 'wallet.unlink', `user:${userId}`, { address: lower }, by.ip);
    },

    async list(userId: string): Promise<WalletView[]> {
      return (await wallets.listForUser(userId)).map(view);
    },
  };
}

export type WalletsService = ReturnType<typeof createWalletsService>;
