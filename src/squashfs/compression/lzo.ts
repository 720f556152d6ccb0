import { createRequire } from 'node:module';
import { asBuffer, checkBound, corruptBlock, unpin, type CompressorOptions, type Decompressor } from './decompressor.js';

/** The part of the `lzo` package (it ships no type declarations) that we use. */
interface LzoModule {
  /** lzo1x_decompress_safe into a new buffer of exactly `length` bytes; throws "...code: LZO_E_*". */
  decompress(input: Buffer, length: number): Buffer;
}

const lzo = createRequire(import.meta.url)('lzo') as LzoModule;

/** lzo: each block is raw LZO1X, decoded by the "safe" decoder into a buffer of `maxOutput` bytes. */
export function createDecompressor(options?: CompressorOptions): Decompressor {
  return {
    name: 'lzo',
    options,
    async decompress(input, maxOutput) {
      checkBound('lzo', maxOutput);
      const src = asBuffer(input);
      let out: Buffer;
      try {
        out = lzo.decompress(src, maxOutput);
      } catch (e) {
        const msg = (e as Error).message;
        throw corruptBlock('lzo', msg.includes('OUTPUT_OVERRUN') ? `decodes to more than ${maxOutput} bytes` : msg, e);
      }
      if (out.length > maxOutput) throw corruptBlock('lzo', `decodes to more than ${maxOutput} bytes`);
      return unpin(out);
    },
  };
}
