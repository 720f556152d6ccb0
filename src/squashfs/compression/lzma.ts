import { Scratch, checkBound, corruptBlock, type CompressorOptions, type Decompressor } from './decompressor.js';
import { liblzmaDecode } from './liblzma.js';

/**
 * Legacy lzma ("LZMA alone"): 5 property bytes, u64 LE uncompressed size, raw LZMA.
 *
 * mksquashfs writes the real size into bytes 5-12 *and* ends the stream with an end marker, which
 * liblzma's alone decoder rejects ("Data is corrupt", measured). So: check the stated size against
 * the bound, decode with the size field set to "unknown" (all 0xFF), then require the decoded length
 * to equal the stated size. (@napi-rs/lzma 1.4.5 also decodes these, ~40% faster, but has no output
 * cap for streams of unknown size; one liblzma path for xz and lzma keeps the bound uniform.)
 */
const HEADER_SIZE = 13;
const SIZE_OFFSET = 5;
const UNKNOWN_SIZE = 0xffff_ffff_ffff_ffffn;

export function createDecompressor(options?: CompressorOptions): Decompressor {
  const scratch = new Scratch();
  return {
    name: 'lzma',
    options,
    async decompress(input, maxOutput) {
      checkBound('lzma', maxOutput);
      if (input.length < HEADER_SIZE) throw corruptBlock('lzma', `block of ${input.length} bytes is shorter than the 13-byte header`);
      const patched = Buffer.from(input); // a copy: never modify the caller's (possibly cached) bytes
      const stated = patched.readBigUInt64LE(SIZE_OFFSET);
      if (stated !== UNKNOWN_SIZE && stated > BigInt(maxOutput)) {
        throw corruptBlock('lzma', `header states ${stated} bytes, more than ${maxOutput}`);
      }
      patched.fill(0xff, SIZE_OFFSET, HEADER_SIZE);
      const out = liblzmaDecode('lzma', 'lzma-alone', patched, maxOutput, scratch);
      if (stated !== UNKNOWN_SIZE && BigInt(out.length) !== stated) {
        throw corruptBlock('lzma', `decodes to ${out.length} bytes, header states ${stated}`);
      }
      return out;
    },
  };
}
