/** Compressor ids as stored in the superblock (squashfs_fs.h). */
export const COMPRESSOR_NAMES = {
  1: 'gzip',
  2: 'lzma',
  3: 'lzo',
  4: 'xz',
  5: 'lz4',
  6: 'zstd',
} as const;

export type CompressorId = keyof typeof COMPRESSOR_NAMES;
export type CompressorName = (typeof COMPRESSOR_NAMES)[CompressorId];

/**
 * Decodes one compressed block (metadata block, data block or fragment block).
 * Implementations must never produce more than `maxOutput` bytes: output that would exceed the
 * bound, or malformed input, is an ECORRUPT SquashfsError (decompression-bomb guard).
 */
export interface Decompressor {
  readonly name: CompressorName;
  decompress(input: Uint8Array, maxOutput: number): Promise<Uint8Array>;
}
