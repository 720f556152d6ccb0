import { corrupt } from './errors.js';
import { u64 } from './bytes.js';
import type { ImageIO } from './io.js';
import type { MetadataReader, Region } from './metadata.js';
import { METADATA_BLOCK_SIZE } from './superblock.js';

/** Largest on-disk size of a metadata block: 2-byte header + 8192 bytes. */
const MAX_STORED_BLOCK = METADATA_BLOCK_SIZE + 2;

/**
 * Two-level lookup table (id, fragment, export, xattr-id): fixed-size entries packed into metadata
 * blocks, located through an uncompressed u64 list of absolute block positions at `listStart`.
 * Entries never straddle blocks (8192 is a multiple of every entry size).
 */
export class LookupTable {
  private constructor(
    readonly name: string,
    private readonly reader: MetadataReader,
    private readonly blocks: number[],
    /** Where the last metadata block must end: the index list, or the xattr header before it. */
    private readonly blocksEnd: number,
    readonly count: number,
    readonly entrySize: number,
  ) {}

  /**
   * Reads and checks the index list: it must fit before `listEnd`; entries strictly increasing,
   * at or after `blocksFloor`, each gap (and the last block to the list) at most 8194 bytes.
   */
  static async open(
    name: string,
    io: ImageIO,
    reader: MetadataReader,
    opts: { listStart: number; listEnd: number; count: number; entrySize: number; blocksFloor: number; blocksEnd?: number },
  ): Promise<LookupTable> {
    const { listStart, listEnd, count, entrySize, blocksFloor } = opts;
    const blocksEnd = opts.blocksEnd ?? listStart;
    const nBlocks = Math.ceil((count * entrySize) / METADATA_BLOCK_SIZE);
    const listBytes = nBlocks * 8;
    if (listStart + listBytes > listEnd) {
      throw corrupt(name, `index list of ${nBlocks} entries (${count} entries) runs past ${listEnd}`, listStart);
    }
    // Each block needs at least 3 bytes between the floor and the list.
    if (nBlocks * 3 > blocksEnd - blocksFloor) throw corrupt(name, `${count} entries cannot fit before the index list`, listStart);
    const raw = nBlocks === 0 ? new Uint8Array(0) : await io.read(listStart, listBytes, name);
    const blocks: number[] = new Array<number>(nBlocks);
    let prev = -1;
    for (let i = 0; i < nBlocks; i++) {
      const pos = u64(raw, i * 8);
      if (pos < blocksFloor || pos >= blocksEnd) throw corrupt(name, `index entry ${i} (${pos}) outside the table`, listStart);
      if (prev >= 0 && (pos <= prev || pos - prev > MAX_STORED_BLOCK)) {
        throw corrupt(name, `index entry ${i} (${pos}) not increasing by 3..8194 bytes from ${prev}`, listStart);
      }
      blocks[i] = pos;
      prev = pos;
    }
    if (nBlocks > 0 && blocksEnd - prev > MAX_STORED_BLOCK) {
      throw corrupt(name, `last block ${prev} is more than 8194 bytes before the index list`, listStart);
    }
    return new LookupTable(name, reader, blocks, blocksEnd, count, entrySize);
  }

  /** Start of the table's first metadata block (where the previous table must end). */
  get firstBlock(): number {
    return this.blocks.length > 0 ? this.blocks[0]! : this.blocksEnd;
  }

  /** The bytes of entry `index` (a view into the cached block). */
  async entry(index: number): Promise<Uint8Array> {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw corrupt(this.name, `index ${index} out of range (${this.count} entries)`);
    }
    const byte = index * this.entrySize;
    const blockIndex = Math.floor(byte / METADATA_BLOCK_SIZE);
    const offset = byte % METADATA_BLOCK_SIZE;
    const pos = this.blocks[blockIndex]!;
    const end = blockIndex + 1 < this.blocks.length ? this.blocks[blockIndex + 1]! : this.blocksEnd;
    const region: Region = { name: this.name, start: pos, end };
    const b = await this.reader.block(pos, region);
    if (b.next !== end) throw corrupt(this.name, `metadata block ${blockIndex} does not end where the next one starts`, pos);
    if (offset + this.entrySize > b.data.length) {
      throw corrupt(this.name, `entry ${index} beyond the block's ${b.data.length} bytes`, pos);
    }
    return b.data.subarray(offset, offset + this.entrySize);
  }
}
