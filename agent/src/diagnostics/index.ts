// The diagnostic capability: the `echo` channel, which measures the live-channel primitive
// (latency, throughput, backpressure) before the terminal and live logs build on it. Modes:
// `echo` sends every byte back, `sink` discards what arrives and closes once `bytes` arrived,
// `source` sends `bytes` zero bytes as fast as the client reads, then closes.
import { CHANNEL_CHUNK_BYTES, echoChannel, type EchoChannelParams } from '@keel/shared';
import type { AgentCapability } from '../capabilities.ts';
import type { ChannelHandler, ChannelSession } from '../channels/hub.ts';

/** The echo channel handler. */
export const echoChannelHandler: ChannelHandler<EchoChannelParams> = {
  definition: echoChannel,
  open(port, params): ChannelSession {
    if (params.mode === 'source') {
      void (async () => {
        const block = Buffer.alloc(CHANNEL_CHUNK_BYTES);
        let sent = 0;
        while (sent < params.bytes && !port.closed) {
          const n = Math.min(block.length, params.bytes - sent);
          await port.write(n === block.length ? block : block.subarray(0, n));
          sent += n;
        }
        port.close({ reason: `sent ${sent} bytes`, exitCode: 0 });
      })();
      return {};
    }
    if (params.mode === 'sink') {
      let received = 0;
      return {
        onData(chunk) {
          received += chunk.length;
          if (params.bytes > 0 && received >= params.bytes) {
            port.close({ reason: `received ${received} bytes`, exitCode: 0 });
          }
        },
      };
    }
    return { onData: (chunk) => port.write(chunk) };
  },
};

/** The diagnostic capability: its channel kinds (no requests or streams). */
export function diagnosticsCapability(): AgentCapability {
  return { name: 'diagnostics', channels: { echo: echoChannelHandler as ChannelHandler } };
}
