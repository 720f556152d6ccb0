import { uncompressSync } from 'lz4-napi';
import { Scratch, checkBound, corruptBlock, unpin, type CompressorOptions, type Decompressor } from './decompressor.js';

/**
 * lz4: each block is a raw LZ4 block (no frame). lz4-napi wants the decoded size as a 4-byte LE
 * prefix; we pass the bound there. Measured: a block that decodes to fewer bytes comes back at its
 * real length, one that would decode to more fails ("provided output is too small"), so the bound
 * is never exceeded. The prefixed input goes through a reused buffer (uncompressSync is synchronous
 * and keeps no reference to it): a fresh one per block cost page faults on every fragment block.
 */
export function createDecompressor(options?: CompressorOptions): Decompressor {
  const scratch = new Scratch();
  return {
    name: 'lz4',
    options,
    async decompress(input, maxOutput) {
      checkBound('lz4', maxOutput);
      const prefixed = scratch.get(4 + input.length);
      prefixed.writeUInt32LE(maxOutput, 0);
      prefixed.set(input, 4);
      let out: Buffer;
      try {
        out = uncompressSync(prefixed);
      } catch (e) {
        const msg = (e as Error).message;
        throw corruptBlock('lz4', msg.includes('too small') ? `decodes to more than ${maxOutput} bytes` : msg, e);
      }
      if (out.length > maxOutput) throw corruptBlock('lz4', `decodes to more than ${maxOutput} bytes`);
      return unpin(out);
    },
  };
}
