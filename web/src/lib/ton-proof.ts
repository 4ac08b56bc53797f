// TON wallet sign-in without the TON Connect SDK: the user pastes the proof their wallet made (for
// the payload this console shows) and this reads it. Accepted shapes: Keel's own (POST
// /auth/wallet/ton/login: address, network, publicKey, proof with stateInit), TON Connect's wallet
// object (account + connectItems.tonProof) and the demo backends' (public_key, proof.state_init).

export interface TonProof {
  address: string;
  network?: '-239' | '-3';
  publicKey: string;
  proof: {
    timestamp: number;
    domain: { lengthBytes?: number; value: string };
    payload: string;
    signature: string;
    stateInit: string;
  };
}

type Loose = Record<string, unknown>;
const obj = (v: unknown): Loose | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Loose) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** Reads a pasted proof; throws an Error saying what is missing. */
export function parseTonProof(text: string): TonProof {
  let root: Loose | undefined;
  try {
    root = obj(JSON.parse(text));
  } catch {
    throw new Error('The proof is not JSON.');
  }
  if (!root) throw new Error('The proof is not a JSON object.');
  const account = obj(root['account']) ?? root;
  const items = obj(root['connectItems']);
  const item = obj(items?.['tonProof']) ?? obj(root['tonProof']);
  const proof = obj(item?.['proof']) ?? obj(root['proof']);
  if (!proof) throw new Error('No ton_proof found (a "proof" object).');
  const address = str(account['address']);
  const publicKey = str(account['publicKey']) ?? str(account['public_key']);
  const stateInit =
    str(account['walletStateInit']) ??
    str(proof['stateInit']) ??
    str(proof['state_init']) ??
    str(root['stateInit']);
  const network = str(account['chain']) ?? str(account['network']);
  const domain = obj(proof['domain']);
  const timestamp = Number(proof['timestamp']);
  const payload = str(proof['payload']);
  const signature = str(proof['signature']);
  const missing = [
    !address && 'address',
    !publicKey && 'public key',
    !stateInit && 'wallet StateInit',
    !str(domain?.['value']) && 'domain',
    !Number.isSafeInteger(timestamp) && 'timestamp',
    !payload && 'payload',
    !signature && 'signature',
  ].filter(Boolean);
  if (missing.length > 0) throw new Error(`The proof has no ${missing.join(', ')}.`);
  if (network !== undefined && network !== '-239' && network !== '-3') {
    throw new Error('The network must be -239 (mainnet) or -3 (testnet).');
  }
  const lengthBytes = domain?.['lengthBytes'];
  return {
    address: address!,
    ...(network ? { network } : {}),
    publicKey: publicKey!.replace(/^0x/, ''),
    proof: {
      timestamp,
      domain: {
        value: str(domain?.['value'])!,
        ...(typeof lengthBytes === 'number' ? { lengthBytes } : {}),
      },
      payload: payload!,
      signature: signature!,
      stateInit: stateInit!,
    },
  };
}
