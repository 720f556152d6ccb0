import { inflateSync } from 'node:zlib';
import { checkBound, corruptBlock, type CompressorOptions, type Decompressor } from './decompressor.js';

/** gzip: each block is a zlib stream (RFC 1950), decoded by node's zlib with a hard output cap. */
export function createDecompressor(options?: CompressorOptions): Decompressor {
  return {
    name: 'gzip',
    options,
    async decompress(input, maxOutput) {
      checkBound('gzip', maxOutput);
      try {
        return inflateSync(input, { maxOutputLength: maxOutput, chunkSize: Math.max(maxOutput, 64) });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const reason = err.code === 'ERR_BUFFER_TOO_LARGE' ? `decodes to more than ${maxOutput} bytes` : err.message;
        throw corruptBlock('gzip', reason, e);
      }
    },
  };
}
