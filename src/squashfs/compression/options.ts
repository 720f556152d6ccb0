/**
 * The compression-options block (format §3.1): the payload that follows the superblock when flag
 * 0x0400 is set. Decoders do not need it (every stream is self-describing); we parse it to validate
 * the image the way unsquashfs and the kernel do, and to show it (`squashfs-r2 stat`).
 *
 * Payload layouts (all little-endian):
 *   gzip  u32 level (1-9) | u16 window bits (8-15) | u16 strategy bitmask
 *   lzo   u32 algorithm (0-4) | u32 level (1-9 for lzo1x_999, else 0)
 *   xz    u32 dictionary size (2^n or 3*2^n, 8 KiB..1 MiB) | u32 BCJ filter bitmask
 *   lz4   u32 version (1) | u32 flags (1 HC, 2 non-default) [| u32 level/acceleration]
 *   zstd  u32 level (1-22)
 *   lzma  none: an options block for lzma is an error
 */
import { SquashfsError } from '../errors.js';
import type { CompressorName, CompressorOptions } from './decompressor.js';

const GZIP_STRATEGIES: [number, string][] = [
  [0x01, 'default'],
  [0x02, 'filtered'],
  [0x04, 'huffman-only'],
  [0x08, 'rle'],
  [0x10, 'fixed'],
];
const LZO_ALGORITHMS = ['lzo1x_1', 'lzo1x_1_11', 'lzo1x_1_12', 'lzo1x_1_15', 'lzo1x_999'];
const LZO1X_999 = 4;
const XZ_FILTERS: [number, string][] = [
  [0x01, 'x86'],
  [0x02, 'powerpc'],
  [0x04, 'ia64'],
  [0x08, 'arm'],
  [0x10, 'armthumb'],
  [0x20, 'sparc'],
  [0x40, 'arm64'],
  [0x80, 'riscv'],
];
const LZ4_LEGACY_VERSION = 1;
const LZ4_FLAG_HC = 0x1;
const LZ4_FLAG_NON_DEFAULT = 0x2;
const XZ_MIN_DICT = 8192;
const XZ_MAX_DICT = 1 << 20; // never larger than the block size, which is at most 1 MiB

function invalid(codec: CompressorName, reason: string): SquashfsError {
  return new SquashfsError('ECORRUPT', `corrupt image: compression options (${codec}): ${reason}`, {
    structure: 'compression options',
    offset: 96,
  });
}

function requireLength(codec: CompressorName, payload: Uint8Array, allowed: number[]): DataView {
  if (!allowed.includes(payload.length)) {
    throw invalid(codec, `payload is ${payload.length} bytes, expected ${allowed.join(' or ')}`);
  }
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

function bitNames(codec: CompressorName, what: string, mask: number, table: [number, string][]): string[] {
  const known = table.reduce((m, [bit]) => m | bit, 0);
  if (mask & ~known) throw invalid(codec, `unknown ${what} bits 0x${(mask & ~known).toString(16)}`);
  return table.filter(([bit]) => mask & bit).map(([, name]) => name);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Validates and decodes an options payload; throws an ECORRUPT SquashfsError for nonsense. */
export function parseCompressionOptions(codec: CompressorName, payload: Uint8Array): CompressorOptions {
  switch (codec) {
    case 'gzip': {
      const v = requireLength(codec, payload, [8]);
      const level = v.getUint32(0, true);
      const windowBits = v.getUint16(4, true);
      const strategy = v.getUint16(6, true);
      if (level < 1 || level > 9) throw invalid(codec, `level ${level} not in 1..9`);
      if (windowBits < 8 || windowBits > 15) throw invalid(codec, `window ${windowBits} bits not in 8..15`);
      const strategies = bitNames(codec, 'strategy', strategy, GZIP_STRATEGIES);
      return {
        compressor: codec,
        fields: { level, windowBits, strategy },
        summary: `level ${level}, window ${windowBits} bits, strategies: ${strategies.join('+') || 'default'}`,
      };
    }
    case 'lzo': {
      const v = requireLength(codec, payload, [8]);
      const algorithm = v.getUint32(0, true);
      const level = v.getUint32(4, true);
      const name = LZO_ALGORITHMS[algorithm];
      if (name === undefined) throw invalid(codec, `unknown algorithm ${algorithm}`);
      if (algorithm === LZO1X_999 ? level < 1 || level > 9 : level !== 0) {
        throw invalid(codec, `level ${level} is not valid for ${name}`);
      }
      return {
        compressor: codec,
        fields: { algorithm: name, level },
        summary: algorithm === LZO1X_999 ? `${name}, level ${level}` : name,
      };
    }
    case 'xz': {
      const v = requireLength(codec, payload, [8]);
      const dictionarySize = v.getUint32(0, true);
      const filterMask = v.getUint32(4, true);
      const shapeOk = isPowerOfTwo(dictionarySize) || (dictionarySize % 3 === 0 && isPowerOfTwo(dictionarySize / 3));
      if (!shapeOk || dictionarySize < XZ_MIN_DICT || dictionarySize > XZ_MAX_DICT) {
        throw invalid(codec, `dictionary size ${dictionarySize} is not 2^n or 3*2^n in 8 KiB..1 MiB`);
      }
      const filters = bitNames(codec, 'filter', filterMask, XZ_FILTERS);
      return {
        compressor: codec,
        fields: { dictionarySize, filters: filters.join(',') },
        summary: `dictionary ${dictionarySize} bytes, filters: ${filters.join(',') || 'none'}`,
      };
    }
    case 'lz4': {
      const v = requireLength(codec, payload, [8, 12]);
      const version = v.getUint32(0, true);
      const flags = v.getUint32(4, true);
      if (version !== LZ4_LEGACY_VERSION) throw invalid(codec, `unsupported lz4 format version ${version}`);
      if (flags & ~(LZ4_FLAG_HC | LZ4_FLAG_NON_DEFAULT)) throw invalid(codec, `unknown flags 0x${flags.toString(16)}`);
      const fields: Record<string, number | string> = { version, hc: flags & LZ4_FLAG_HC ? 1 : 0 };
      let summary = flags & LZ4_FLAG_HC ? 'high compression' : 'default';
      if (payload.length === 12) {
        fields.level = v.getUint32(8, true);
        summary += `, level ${fields.level}`;
      }
      return { compressor: codec, fields, summary };
    }
    case 'zstd': {
      const v = requireLength(codec, payload, [4]);
      const level = v.getUint32(0, true);
      if (level < 1 || level > 22) throw invalid(codec, `level ${level} not in 1..22`);
      return { compressor: codec, fields: { level }, summary: `level ${level}` };
    }
    case 'lzma':
      throw invalid(codec, 'lzma has no compression options');
  }
}

/** Defaults the writers use when they omit the block (what `stat` shows for such images). */
export const DEFAULT_OPTIONS_SUMMARY: Record<CompressorName, string> = {
  gzip: 'defaults (level 9, window 15 bits)',
  lzma: 'defaults',
  lzo: 'defaults (lzo1x_999, level 8)',
  xz: 'defaults (dictionary = block size, no filters)',
  lz4: 'defaults',
  zstd: 'defaults (level 15)',
};
