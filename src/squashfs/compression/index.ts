import { inflateSync } from 'node:zlib';
import { SquashfsError, corrupt } from '../errors.js';
import { COMPRESSOR_NAMES, type CompressorId, type Decompressor } from './decompressor.js';

export type { Decompressor, CompressorName, CompressorId } from './decompressor.js';
export { COMPRESSOR_NAMES } from './decompressor.js';

/**
 * Returns the decompressor for a superblock compressor id. `options` is the payload of the
 * compression-options block when the image has one (flag 0x0400).
 * NOTE: only gzip is wired up so far; the other five land in this module next.
 */
export async function loadDecompressor(id: number, options?: Uint8Array): Promise<Decompressor> {
  void options;
  if (!(id in COMPRESSOR_NAMES)) {
    throw new SquashfsError('EUNSUPPORTED', `unknown compressor id ${id}`, { structure: 'superblock' });
  }
  const name = COMPRESSOR_NAMES[id as CompressorId];
  if (name === 'gzip') {
    return {
      name,
      async decompress(input, maxOutput) {
        try {
          return inflateSync(input, { maxOutputLength: maxOutput });
        } catch (e) {
          throw corrupt('gzip block', (e as Error).message);
        }
      },
    };
  }
  throw new SquashfsError('EUNSUPPORTED', `compressor ${name} is not supported yet`, { structure: 'superblock' });
}
