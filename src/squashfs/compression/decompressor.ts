import { SquashfsError } from '../errors.js';

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
 * The decoded compression-options block (format §3.1). Informational: every block's stream is
 * self-describing, so decoders only use it to validate the image and for display.
 */
export interface CompressorOptions {
  compressor: CompressorName;
  /** Named fields in the writer's vocabulary, e.g. { level: 9, windowBits: 15 }. */
  fields: Record<string, number | string>;
  /** One line for humans, e.g. "level 1, window 12 bits, strategies: default". */
  summary: string;
}

/**
 * Decodes one compressed block (metadata block, data block or fragment block).
 * Implementations must never produce more than `maxOutput` bytes: output that would exceed the
 * bound, or malformed input, is an ECORRUPT SquashfsError (decompression-bomb guard).
 */
export interface Decompressor {
  readonly name: CompressorName;
  /** The image's compression options when it has an options block. */
  readonly options?: CompressorOptions;
  decompress(input: Uint8Array, maxOutput: number): Promise<Uint8Array>;
  /** Starts loading what decoding data blocks at full speed needs (see lz4.ts); decoding works without it. */
  warm?(): void;
}

/** The one error every codec reports: "corrupt <codec> block: <reason>". */
export function corruptBlock(codec: CompressorName, reason: string, cause?: unknown): SquashfsError {
  return new SquashfsError('ECORRUPT', `corrupt ${codec} block: ${reason}`, { structure: `${codec} block`, cause });
}

/** Checks the bound itself (callers pass block_size or 8192); a nonsense bound is a bug upstream. */
export function checkBound(codec: CompressorName, maxOutput: number): void {
  if (!Number.isSafeInteger(maxOutput) || maxOutput <= 0 || maxOutput > MAX_BLOCK_OUTPUT) {
    throw new SquashfsError('EINVAL', `${codec}: invalid output bound ${maxOutput}`);
  }
}

/** Largest output any squashfs block can have: the 1 MiB maximum block size. */
export const MAX_BLOCK_OUTPUT = 1 << 20;

/**
 * A reusable output buffer per decompressor. Decoding is synchronous, so one scratch buffer per
 * instance is safe; results are copied out at their exact length so caches never pin a larger
 * allocation than they account for.
 */
export class Scratch {
  private buf = Buffer.alloc(0);

  get(size: number): Buffer {
    if (this.buf.length < size) this.buf = Buffer.allocUnsafe(size);
    return this.buf.subarray(0, size);
  }
}

/** Exact-length copy of the first `n` bytes. */
export function copyOut(buf: Uint8Array, n: number): Buffer {
  return Buffer.from(buf.subarray(0, n));
}

/** A short result inside a much larger allocation is copied, so caches don't pin the big one. */
export function unpin(buf: Buffer): Buffer {
  return buf.length * 2 < buf.buffer.byteLength ? copyOut(buf, buf.length) : buf;
}

/** A Buffer view of the caller's bytes (no copy). */
export function asBuffer(input: Uint8Array): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}
