import { createRequire } from 'node:module';
import { Scratch, checkBound, copyOut, corruptBlock, type CompressorOptions, type Decompressor } from './decompressor.js';

// zstd-napi's binding is `module.exports = require(<addon>)`: ESM named imports cannot see its
// exports, so load it with require (types from its declarations).
const { DCtx, getFrameContentSize } = createRequire(import.meta.url)('zstd-napi/binding') as typeof import('zstd-napi/binding.js');

/**
 * zstd: each block is one zstd frame, decoded into a buffer of exactly `maxOutput` bytes. A frame
 * that declares a larger content size is refused before decoding; one that does not declare it
 * fails inside the decoder when the buffer is full ("Destination buffer is too small").
 */

export function createDecompressor(options?: CompressorOptions): Decompressor {
  const dctx = new DCtx();
  const scratch = new Scratch();
  return {
    name: 'zstd',
    options,
    async decompress(input, maxOutput) {
      checkBound('zstd', maxOutput);
      let declared: number | null;
      try {
        declared = getFrameContentSize(input);
      } catch (e) {
        throw corruptBlock('zstd', (e as Error).message, e);
      }
      if (declared !== null && declared > maxOutput) {
        throw corruptBlock('zstd', `frame declares ${declared} bytes, more than ${maxOutput}`);
      }
      const out = scratch.get(maxOutput);
      let n: number;
      try {
        n = dctx.decompress(out, input);
      } catch (e) {
        const msg = (e as Error).message;
        throw corruptBlock('zstd', msg.includes('too small') ? `decodes to more than ${maxOutput} bytes` : msg, e);
      }
      return copyOut(out, n);
    },
  };
}
