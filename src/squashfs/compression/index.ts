/**
 * Compressor registry: superblock compressor id -> Decompressor. Each codec lives in its own
 * module and is imported on first use, so opening an lz4 image never loads liblzma, lzo or zstd.
 */
import { SquashfsError } from '../errors.js';
import { COMPRESSOR_NAMES, type CompressorId, type CompressorName, type CompressorOptions, type Decompressor } from './decompressor.js';
import { DEFAULT_OPTIONS_SUMMARY, parseCompressionOptions } from './options.js';

export type { CompressorId, CompressorName, CompressorOptions, Decompressor } from './decompressor.js';
export { COMPRESSOR_NAMES, MAX_BLOCK_OUTPUT } from './decompressor.js';
export { DEFAULT_OPTIONS_SUMMARY, parseCompressionOptions } from './options.js';

interface CodecModule {
  createDecompressor(options?: CompressorOptions): Decompressor;
}

const CODECS: Record<CompressorName, () => Promise<CodecModule>> = {
  gzip: () => import('./gzip.js'),
  lzma: () => import('./lzma.js'),
  lzo: () => import('./lzo.js'),
  xz: () => import('./xz.js'),
  lz4: () => import('./lz4.js'),
  zstd: () => import('./zstd.js'),
};

/** The compressor name for a superblock id; EUNSUPPORTED for ids squashfs does not define. */
export function compressorName(id: number): CompressorName {
  if (!Object.hasOwn(COMPRESSOR_NAMES, id)) {
    throw new SquashfsError('EUNSUPPORTED', `unknown compressor id ${id}`, { structure: 'superblock' });
  }
  return COMPRESSOR_NAMES[id as CompressorId];
}

/**
 * Returns the decompressor for a superblock compressor id. `options` is the payload of the
 * compression-options block when the image has one (flag 0x0400); it is validated (ECORRUPT when
 * it makes no sense) and exposed as `decompressor.options`.
 */
export async function loadDecompressor(id: number, options?: Uint8Array): Promise<Decompressor> {
  const name = compressorName(id);
  const parsed = options === undefined ? undefined : parseCompressionOptions(name, options);
  let codec: CodecModule;
  try {
    codec = await CODECS[name]();
  } catch (e) {
    throw new SquashfsError('EUNSUPPORTED', `compressor ${name}: its decoder failed to load: ${(e as Error).message}`, {
      structure: 'superblock',
      cause: e,
    });
  }
  return codec.createDecompressor(parsed);
}

/** One line describing an image's compressor settings (for `stat` and logs). */
export function describeOptions(id: number, options?: Uint8Array): string {
  const name = compressorName(id);
  return `${name}: ${options === undefined ? DEFAULT_OPTIONS_SUMMARY[name] : parseCompressionOptions(name, options).summary}`;
}
