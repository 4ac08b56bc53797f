// Wallet sign-in in the browser: the page's EIP-1193 provider (MetaMask and the like inject
// `window.ethereum`) gives the account and its chain, the controller writes the EIP-4361 message
// for that account (so the console needs no hashing of its own), and the wallet signs it
// (personal_sign). The controller checks everything; this file only carries messages.

/** The part of EIP-1193 used here. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

/** The injected provider, or null when the browser has no wallet. */
export function walletProvider(): Eip1193Provider | null {
  const eth = (globalThis as { ethereum?: Eip1193Provider }).ethereum;
  return eth && typeof eth.request === 'function' ? eth : null;
}

const hexOf = (text: string) =>
  `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;

/**
 * Asks the wallet for its account and chain, gets the message to sign for them from `challenge`,
 * and has the wallet sign it.
 *
 * @example const signed = await signWithWallet(eth, (a, c) => api.walletLinkChallenge({ address: a, chainId: c }))
 */
export async function signWithWallet(
  provider: Eip1193Provider,
  challenge: (address: string, chainId: number) => Promise<{ message?: string }>,
): Promise<{ message: string; signature: string; address: string }> {
  const accounts = (await provider.request({ method: 'eth_requestAccounts' })) as string[];
  const address = accounts[0];
  if (!address) throw new Error('The wallet shared no account.');
  const chainId = Number.parseInt(String(await provider.request({ method: 'eth_chainId' })), 16);
  const { message } = await challenge(address, Number.isFinite(chainId) && chainId > 0 ? chainId : 1);
  if (!message) throw new Error('The controller wrote no message to sign.');
  const signature = (await provider.request({
    method: 'personal_sign',
    params: [hexOf(message), address],
  })) as string;
  return { message, signature, address };
}
