/**
 * Bounded, synchronous decoding with liblzma through lzma-native's native stream (the only package
 * measured here that decodes xz blocks with BCJ filters). Shared by the xz and legacy lzma codecs.
 *
 * lzma-native's JS layer is a Transform stream with no output cap; its native `Stream` hands each
 * output chunk to `bufferHandler` synchronously when `code(chunk, false)` is used. We copy chunks
 * into a bounded buffer and throw from the handler as soon as the bound would be passed, which
 * aborts `code()`: the bound holds and a bomb costs at most one chunk of extra work.
 */
import { createRequire } from 'node:module';
import { type Scratch, copyOut, corruptBlock, type CompressorName } from './decompressor.js';

type BufferHandler = (
  buf: Buffer | null | undefined,
  processedChunks: number | undefined,
  err: Error | null | undefined,
  totalIn: number | null,
  totalOut: number | null,
) => void;

interface NativeStream {
  streamDecoder_(memlimit: number | null, flags: number): void;
  aloneDecoder_(memlimit: number | null): void;
  setBufsize(n: number): void;
  code(chunk: Buffer | null, async: boolean): void;
  resetUnderlying(): void;
  bufferHandler: BufferHandler;
}

const lzmaNative = createRequire(import.meta.url)('lzma-native') as { Stream: new () => NativeStream };

/** Decoder memory cap: squashfs dictionaries are at most the 1 MiB block size; this leaves room. */
const MEMLIMIT = 64 << 20;
const OUTPUT_CHUNK = 64 << 10;

class BoundExceeded extends Error {}

export type LiblzmaFormat = 'xz' | 'lzma-alone';

export function liblzmaDecode(
  codec: CompressorName,
  format: LiblzmaFormat,
  input: Buffer,
  maxOutput: number,
  scratch: Scratch,
): Buffer {
  const stream = new lzmaNative.Stream();
  const out = scratch.get(maxOutput);
  let written = 0;
  let ended = false;
  let failure: Error | undefined;
  stream.bufferHandler = (buf, processedChunks, err) => {
    if (err) {
      failure = err;
    } else if (buf === null && processedChunks === undefined) {
      ended = true; // LZMA_STREAM_END
    } else if (buf) {
      if (written + buf.length > maxOutput) throw new BoundExceeded();
      buf.copy(out, written);
      written += buf.length;
    }
  };
  try {
    if (format === 'xz') stream.streamDecoder_(MEMLIMIT, 0);
    else stream.aloneDecoder_(MEMLIMIT);
    stream.setBufsize(OUTPUT_CHUNK);
    stream.code(input, false);
    if (!ended && !failure) stream.code(null, false);
  } catch (e) {
    if (e instanceof BoundExceeded) throw corruptBlock(codec, `decodes to more than ${maxOutput} bytes`);
    throw corruptBlock(codec, (e as Error).message, e);
  } finally {
    try {
      stream.resetUnderlying();
    } catch {
      // already released
    }
  }
  if (failure) throw corruptBlock(codec, failure.message, failure);
  if (!ended) throw corruptBlock(codec, 'stream does not end');
  return copyOut(out, written);
}
