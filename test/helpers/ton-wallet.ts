// A real TON wallet for tests: an ed25519 key, the published wallet contract code (v4r2, v3r2, v5r1,
// as TON wallets deploy it) with that key in its data, the address that StateInit hashes to, and
// ton_proof signing exactly as a TON Connect wallet does (ton-proof.ts has the format).
import { ed25519 } from '@noble/curves/ed25519.js';
import { beginCell, Cell, contractAddress, storeStateInit, type Address } from '@ton/core';
import { tonProofSignedBytes, type TonProofInput } from '../../controller/src/services/ton-proof.ts';

/** Wallet v4r2 code (ton-org/ton WalletContractV4; code hash feb5ff68...). */
export const WALLET_V4R2_CODE =
  'te6ccgECFAEAAtQAART/APSkE/S88sgLAQIBIAIDAgFIBAUE+PKDCNcYINMf0x/THwL4I7vyZO1E0NMf0x/T//QE0VFDuvKhUVG68qIF+QFUEGT5EPKj+AAkpMjLH1JAyx9SMMv/UhD0AMntVPgPAdMHIcAAn2xRkyDXSpbTB9QC+wDoMOAhwAHjACHAAuMAAcADkTDjDQOkyMsfEssfy/8QERITAubQAdDTAyFxsJJfBOAi10nBIJJfBOAC0x8hghBwbHVnvSKCEGRzdHK9sJJfBeAD+kAwIPpEAcjKB8v/ydDtRNCBAUDXIfQEMFyBAQj0Cm+hMbOSXwfgBdM/yCWCEHBsdWe6kjgw4w0DghBkc3RyupJfBuMNBgcCASAICQB4AfoA9AQw+CdvIjBQCqEhvvLgUIIQcGx1Z4MesXCAGFAEywUmzxZY+gIZ9ADLaRfLH1Jgyz8gyYBA+wAGAIpQBIEBCPRZMO1E0IEBQNcgyAHPFvQAye1UAXKwjiOCEGRzdHKDHrFwgBhQBcsFUAPPFiP6AhPLassfyz/JgED7AJJfA+ICASAKCwBZvSQrb2omhAgKBrkPoCGEcNQICEekk30pkQzmkD6f+YN4EoAbeBAUiYcVnzGEAgFYDA0AEbjJftRNDXCx+AA9sp37UTQgQFA1yH0BDACyMoHy//J0AGBAQj0Cm+hMYAIBIA4PABmtznaiaEAga5Drhf/AABmvHfaiaEAQa5DrhY/AAG7SB/oA1NQi+QAFyMoHFcv/ydB3dIAYyMsFywIizxZQBfoCFMtrEszMyXP7AMhAFIEBCPRR8qcCAHCBAQjXGPoA0z/IVCBHgQEI9FHyp4IQbm90ZXB0gBjIywXLAlAGzxZQBPoCFMtqEssfyz/Jc/sAAgBsgQEI1xj6ANM/MFIkgQEI9Fnyp4IQZHN0cnB0gBjIywXLAlAFzxZQA/oCE8tqyx8Syz/Jc/sAAAr0AMntVA==';

/** Wallet v3r2 code (ton-org/ton WalletContractV3R2; code hash 84dafa44...). */
export const WALLET_V3R2_CODE =
  'te6cckEBAQEAcQAA3v8AIN0gggFMl7ohggEznLqxn3Gw7UTQ0x/THzHXC//jBOCk8mCDCNcYINMf0x/TH/gjE7vyY+1E0NMf0x/T/9FRMrryoVFEuvKiBPkBVBBV+RDyo/gAkyDXSpbTB9QC+wDo0QGkyMsfyx/L/8ntVBC9ba0=';

/** Wallet v5r1 code (ton-org/ton WalletContractV5R1, from wallet-contract-v5; code hash 20834b7b...). */
export const WALLET_V5R1_CODE =
  'te6cckECFAEAAoEAART/APSkE/S88sgLAQIBIAINAgFIAwQC3NAg10nBIJFbj2Mg1wsfIIIQZXh0br0hghBzaW50vbCSXwPgghBleHRuuo60gCDXIQHQdNch+kAw+kT4KPpEMFi9kVvg7UTQgQFB1yH0BYMH9A5voTGRMOGAQNchcH/bPOAxINdJgQKAuZEw4HDiEA8CASAFDAIBIAYJAgFuBwgAGa3OdqJoQCDrkOuF/8AAGa8d9qJoQBDrkOuFj8ACAUgKCwAXsyX7UTQcdch1wsfgABGyYvtRNDXCgCAAGb5fD2omhAgKDrkPoCwBAvIOAR4g1wsfghBzaWduuvLgin8PAeaO8O2i7fshgwjXIgKDCNcjIIAg1yHTH9Mf0x/tRNDSANMfINMf0//XCgAK+QFAzPkQmiiUXwrbMeHywIffArNQB7Dy0IRRJbry4IVQNrry4Ib4I7vy0IgikvgA3gGkf8jKAMsfAc8Wye1UIJL4D95w2zzYEAP27aLt+wL0BCFukmwhjkwCIdc5MHCUIccAs44tAdcoIHYeQ2wg10nACPLgkyDXSsAC8uCTINcdBscSwgBSMLDy0InXTNc5MAGk6GwShAe78uCT10rAAPLgk+1V4tIAAcAAkVvg69csCBQgkXCWAdcsCBwS4lIQseMPINdKERITAJYB+kAB+kT4KPpEMFi68uCR7UTQgQFB1xj0BQSdf8jKAEAEgwf0U/Lgi44UA4MH9Fvy4Iwi1woAIW4Bs7Dy0JDiyFADzxYS9ADJ7VQAcjDXLAgkji0h8uCS0gDtRNDSAFETuvLQj1RQMJExnAGBAUDXIdcKAPLgjuLIygBYzxbJ7VST8sCN4gAQk1vbMeHXTNC01sNe';

export interface TestTonWallet {
  secretKey: Uint8Array;
  publicKeyHex: string;
  address: Address;
  /** base64 BOC of the StateInit. */
  stateInit: string;
  /** A proof as TON Connect gives it; `address` overrides the address signed (for forgeries). */
  prove(input: { domain: string; timestamp: number; payload: string; address?: Address }): TonProofInput;
}

/** A fresh wallet of `version` on workchain 0 (default wallet id 698983191). */
export function tonWallet(version: 'v4r2' | 'v3r2' | 'v5r1' = 'v4r2'): TestTonWallet {
  const secretKey = ed25519.utils.randomSecretKey();
  const publicKey = Buffer.from(ed25519.getPublicKey(secretKey));
  const codes = { v4r2: WALLET_V4R2_CODE, v3r2: WALLET_V3R2_CODE, v5r1: WALLET_V5R1_CODE };
  const code = Cell.fromBoc(Buffer.from(codes[version], 'base64'))[0]!;
  const builder = beginCell();
  // v5r1: is_signature_allowed, seqno, wallet id (mainnet, workchain 0, v5r1, subwallet 0), key, no extensions.
  if (version === 'v5r1')
    builder.storeBit(1).storeUint(0, 32).storeUint(2147483409, 32).storeBuffer(publicKey).storeBit(0);
  else builder.storeUint(0, 32).storeUint(698983191, 32).storeBuffer(publicKey);
  if (version === 'v4r2') builder.storeBit(0); // no plugins
  const init = { code, data: builder.endCell() };
  const address = contractAddress(0, init);
  const stateInit = beginCell().store(storeStateInit(init)).endCell().toBoc().toString('base64');
  return {
    secretKey,
    publicKeyHex: publicKey.toString('hex'),
    address,
    stateInit,
    prove({ domain, timestamp, payload, address: signedAddress = address }) {
      const signature = ed25519.sign(
        tonProofSignedBytes(signedAddress, domain, timestamp, payload),
        secretKey,
      );
      return {
        address: signedAddress.toRawString(),
        network: '-239',
        publicKey: publicKey.toString('hex'),
        proof: {
          timestamp,
          domain: { lengthBytes: Buffer.byteLength(domain), value: domain },
          payload,
          signature: Buffer.from(signature).toString('base64'),
          stateInit,
        },
      };
    },
  };
}
