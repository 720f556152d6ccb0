import { corrupt, SquashfsError } from './errors.js';
import { u16 } from './bytes.js';
import type { ImageIO } from './io.js';
import type { BlockCache } from './block-cache.js';
import type { Decompressor } from './compression/index.js';
import { METADATA_BLOCK_SIZE } from './superblock.js';

/**
 * Metadata blocks: `u16 header` (low 15 bits = stored length 1..8192, bit 15 = stored uncompressed)
 * followed by the payload, decoding to at most 8192 bytes. Tables are streams of such blocks.
 */
export interface MetadataBlock {
  data: Uint8Array;
  /** Absolute position of the next block of the same stream. */
  next: number;
}

/** A table's extent: every block of that stream must lie inside [start, end). */
export interface Region {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

const HEADER_UNCOMPRESSED = 0x8000;
const EMPTY = new Uint8Array(0);
const MAX_HEADER_READ = 2 + METADATA_BLOCK_SIZE;

export function wrapDecodeError(e: unknown, structure: string, offset: number): SquashfsError {
  if (e instanceof SquashfsError) return e;
  return corrupt(structure, `decompression failed: ${(e as Error)?.message ?? String(e)}`, offset);
}

export class MetadataReader {
  constructor(
    private readonly io: ImageIO,
    private readonly decompressor: Decompressor,
    private readonly cache: BlockCache<MetadataBlock>,
  ) {}

  /** The block whose header is at absolute `pos`, which must lie inside `region`. */
  block(pos: number, region: Region): Promise<MetadataBlock> {
    const hit = this.cached(pos, region);
    if (hit !== undefined) return Promise.resolve(hit);
    if (!(pos >= region.start && pos + 2 < region.end)) {
      return Promise.reject(corrupt(region.name, `metadata block position outside the table [${region.start}, ${region.end})`, pos));
    }
    return this.cache.load(pos, () => this.fetch(pos, region)).then((b) => {
      if (b.next > region.end) throw corrupt(region.name, 'metadata block runs past the end of its table', pos);
      return b;
    });
  }

  /** The block at `pos` if it is decoded and cached (checked against `region` as block() does), else undefined. */
  cached(pos: number, region: Region): MetadataBlock | undefined {
    const hit = this.cache.get(pos);
    if (hit !== undefined && (hit.next > region.end || pos < region.start)) throw corrupt(region.name, 'metadata block outside its table', pos);
    return hit;
  }

  private async fetch(pos: number, region: Region): Promise<MetadataBlock> {
    // Header and payload in one read when possible (payload <= 8192).
    const want = Math.min(MAX_HEADER_READ, region.end - pos);
    const raw = await this.io.read(pos, want, region.name);
    const header = u16(raw, 0);
    const length = header & ~HEADER_UNCOMPRESSED;
    if (length === 0 || length > METADATA_BLOCK_SIZE) throw corrupt(region.name, `metadata block length ${length} not in 1..8192`, pos);
    if (2 + length > want) throw corrupt(region.name, `metadata block of ${length} bytes runs past the end of its table`, pos);
    const payload = raw.subarray(2, 2 + length);
    let data: Uint8Array;
    if (header & HEADER_UNCOMPRESSED) {
      data = payload.slice();
    } else {
      try {
        data = await this.decompressor.decompress(payload, METADATA_BLOCK_SIZE);
      } catch (e) {
        throw wrapDecodeError(e, region.name, pos);
      }
      if (data.length > METADATA_BLOCK_SIZE) throw corrupt(region.name, 'metadata block decodes to more than 8192 bytes', pos);
    }
    if (data.length === 0) throw corrupt(region.name, 'metadata block decodes to nothing', pos);
    return { data, next: pos + 2 + length };
  }
}

/**
 * A position in a metadata stream that reads across block boundaries
 * (records span blocks: copy what the current block has, continue at offset 0 of the next).
 */
export class MetadataCursor {
  /**
   * @param fresh the position is a reference, which must point inside its block (kernel: offset <
   *   length); a position reached by reading may sit exactly at a block's end.
   */
  constructor(
    private readonly reader: MetadataReader,
    readonly region: Region,
    public block: number,
    public offset: number,
    private fresh = false,
  ) {}

  static at(reader: MetadataReader, region: Region, relativeBlock: number, offset: number): MetadataCursor {
    if (!Number.isSafeInteger(relativeBlock) || relativeBlock < 0 || region.start + relativeBlock >= region.end) {
      throw corrupt(region.name, `metadata reference block ${relativeBlock} outside the table`);
    }
    if (offset < 0 || offset >= METADATA_BLOCK_SIZE) throw corrupt(region.name, `metadata offset ${offset} beyond 8192`);
    return new MetadataCursor(reader, region, region.start + relativeBlock, offset, true);
  }

  private checkStart(b: MetadataBlock): void {
    this.fresh = false;
    if (this.offset >= b.data.length) {
      throw corrupt(this.region.name, `metadata offset ${this.offset} beyond the block's ${b.data.length} bytes`, this.block);
    }
  }

  /**
   * read(n) without waiting: the bytes when they lie in the current block and it is cached (the
   * common case: a record inside a block already decoded), else undefined and nothing is consumed.
   */
  readNow(n: number): Uint8Array | undefined {
    const b = this.reader.cached(this.block, this.region);
    if (b === undefined) return undefined;
    if (this.fresh) this.checkStart(b);
    if (this.offset + n > b.data.length) return undefined;
    const out = b.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  /** Reads exactly `n` bytes; a subarray of the cached block when they sit in one block. */
  async read(n: number): Promise<Uint8Array> {
    if (n === 0) return EMPTY;
    let b = await this.reader.block(this.block, this.region);
    if (this.fresh) this.checkStart(b);
    if (this.offset >= b.data.length) {
      if (this.offset > b.data.length) throw corrupt(this.region.name, `offset ${this.offset} beyond the block's ${b.data.length} bytes`, this.block);
      this.block = b.next;
      this.offset = 0;
      b = await this.reader.block(this.block, this.region);
    }
    if (this.offset + n <= b.data.length) {
      const out = b.data.subarray(this.offset, this.offset + n);
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let done = 0;
    for (;;) {
      const take = Math.min(n - done, b.data.length - this.offset);
      out.set(b.data.subarray(this.offset, this.offset + take), done);
      done += take;
      this.offset += take;
      if (done === n) return out;
      this.block = b.next;
      this.offset = 0;
      b = await this.reader.block(this.block, this.region);
    }
  }
}
