import { FileSource } from '../../src/r2/file.js';
import type { ByteSource } from '../../src/squashfs/source.js';

/** A real file source that records every read (offset, length): for asserting I/O patterns. */
export async function countingFileSource(path: string): Promise<ByteSource & { reads: [number, number][] }> {
  const inner = await FileSource.open(path);
  const reads: [number, number][] = [];
  return {
    name: inner.name,
    size: inner.size,
    reads,
    read(offset: number, length: number) {
      reads.push([offset, length]);
      return inner.read(offset, length);
    },
    close: () => inner.close(),
  };
}
