import { Scratch, asBuffer, checkBound, type CompressorOptions, type Decompressor } from './decompressor.js';
import { liblzmaDecode } from './liblzma.js';

/** xz: each block is a complete .xz stream (CRC32 check, optional BCJ filter before LZMA2). */
export function createDecompressor(options?: CompressorOptions): Decompressor {
  const scratch = new Scratch();
  return {
    name: 'xz',
    options,
    async decompress(input, maxOutput) {
      checkBound('xz', maxOutput);
      return liblzmaDecode('xz', 'xz', asBuffer(input), maxOutput, scratch);
    },
  };
}
