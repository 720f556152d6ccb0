// MetadataCursor.readNow (no await when the record is in a cached block) must consume exactly what
// read() would, or nothing.
import { expect, test } from 'vitest';
import { FileSource } from '../../src/r2/file.js';
import { BlockCache } from '../../src/squashfs/block-cache.js';
import { loadDecompressor } from '../../src/squashfs/compression/index.js';
import { ImageIO } from '../../src/squashfs/io.js';
import { MetadataCursor, MetadataReader, type MetadataBlock } from '../../src/squashfs/metadata.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import { fixture } from '../helpers/fixtures.js';

test('a stream read with readNow where it can and read where not equals the stream read with read alone', async () => {
  const path = (await fixture('gzip')).path;
  const image = await SquashfsImage.open(await FileSource.open(path));
  const sb = image.superblock;
  await image.close();
  const source = await FileSource.open(path);
  try {
    const io = new ImageIO(source);
    const dec = await loadDecompressor(sb.compressorId);
    const region = { name: 'inode table', start: sb.inodeTableStart, end: sb.directoryTableStart };
    const reader = () => new MetadataReader(io, dec, new BlockCache<MetadataBlock>(1 << 20, (b) => b.data.length));
    const total = Math.min(60_000, Math.floor(((region.end - region.start) * 3) / 2));
    const sizes: number[] = [];
    let seed = 11;
    for (let n = 0; n < total; ) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const size = 1 + (seed % 300);
      sizes.push(size);
      n += size;
    }
    const plain = MetadataCursor.at(reader(), region, 0, 0);
    const mixed = MetadataCursor.at(reader(), region, 0, 0);
    let now = 0;
    let waited = 0;
    for (const size of sizes) {
      const want = Buffer.from(await plain.read(size).catch(() => new Uint8Array(0)));
      if (want.length === 0) break; // the end of the table
      let got = mixed.readNow(size);
      if (got === undefined) {
        waited++;
        got = await mixed.read(size);
      } else now++;
      expect(Buffer.from(got).equals(want), `record of ${size} bytes`).toBe(true);
      expect([mixed.block, mixed.offset]).toEqual([plain.block, plain.offset]);
    }
    expect(now).toBeGreaterThan(waited); // most records are in a block already decoded
    expect(waited).toBeGreaterThan(0); // the first record and those across block ends
  } finally {
    await source.close();
  }
});
