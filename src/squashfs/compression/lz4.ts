import { METADATA_BLOCK_SIZE } from '../superblock.js';
import {
  type CompressorOptions,
  checkBound,
  copyOut,
  corruptBlock,
  type Decompressor,
  Scratch,
  unpin,
} from './decompressor.js';
import { decodeLz4Block, Lz4BlockError } from './lz4-block.js';

/**
 * lz4: each block is a raw LZ4 block (no frame), decoded by one of two decoders:
 *
 * - lz4-block.ts (TypeScript) for metadata blocks, and for data blocks until lz4-napi has loaded. Loading
 *   lz4-napi takes ~10-13 ms here (its loader script, then the 0.8 MB library), which was on the path of
 *   every lz4 mount's start: an image's first metadata blocks decode before it can be mounted.
 * - lz4-napi for data blocks once loaded: about twice as fast on source-like data here (590 against
 *   310 MB/s once compiled; far slower while V8 still interprets the TypeScript decoder: a mount's first
 *   file took 7 ms longer, its first small tree 10-20 ms). `warm` loads it; the image's data reader
 *   calls it once its first data read is on its way (FileData.readStored in data.ts says why there).
 *
 * lz4-napi wants the decoded size as a 4-byte LE prefix; we pass the bound there. Measured: a block that
 * decodes to fewer bytes comes back at its real length, one that would decode to more fails ("provided
 * output is too small"), so the bound is never exceeded. The prefixed input goes through a reused
 * buffer (uncompressSync is synchronous and keeps no reference to it): a fresh one per block cost page
 * faults on every fragment block. If lz4-napi cannot load, the TypeScript decoder does everything.
 */

type Uncompress = (input: Buffer) => Buffer;
let native: Uncompress | undefined;
let nativeLoad: Promise<void> | undefined;

/** Loads lz4-napi (once); resolves when it is in use, or when it could not be loaded (then never used). */
export function loadNativeLz4(): Promise<void> {
  nativeLoad ??= import('lz4-napi').then(
    (m) => {
      native = m.uncompressSync;
    },
    () => undefined,
  );
  return nativeLoad;
}

/** Which decoder data blocks go to now (stats and tests). */
export function lz4DataDecoder(): 'native' | 'typescript' {
  return native ? 'native' : 'typescript';
}

export function createDecompressor(options?: CompressorOptions): Decompressor {
  const scratch = new Scratch();
  const prefixScratch = new Scratch();

  const decodeTs = (input: Uint8Array, maxOutput: number): Buffer => {
    const out = scratch.get(maxOutput);
    let n: number;
    try {
      n = decodeLz4Block(input, out);
    } catch (e) {
      if (e instanceof Lz4BlockError) throw corruptBlock('lz4', e.message, e);
      throw e;
    }
    return copyOut(out, n);
  };

  const decodeNative = (uncompress: Uncompress, input: Uint8Array, maxOutput: number): Buffer => {
    const prefixed = prefixScratch.get(4 + input.length);
    prefixed.writeUInt32LE(maxOutput, 0);
    prefixed.set(input, 4);
    let out: Buffer;
    try {
      out = uncompress(prefixed);
    } catch (e) {
      const msg = (e as Error).message;
      throw corruptBlock('lz4', msg.includes('too small') ? `decodes to more than ${maxOutput} bytes` : msg, e);
    }
    if (out.length > maxOutput) throw corruptBlock('lz4', `decodes to more than ${maxOutput} bytes`);
    return unpin(out);
  };

  return {
    name: 'lz4',
    options,
    warm() {
      void loadNativeLz4();
    },
    async decompress(input, maxOutput) {
      checkBound('lz4', maxOutput);
      if (maxOutput <= METADATA_BLOCK_SIZE) return decodeTs(input, maxOutput);
      if (native) return decodeNative(native, input, maxOutput);
      return decodeTs(input, maxOutput);
    },
  };
}
