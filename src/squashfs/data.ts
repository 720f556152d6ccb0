import { entryLru } from '../util/entry-lru.js';
import { Arena, Lease } from '../util/arena.js';
import { corrupt, SquashfsError } from './errors.js';
import { u32, u64 } from './bytes.js';
import { BlockCache } from './block-cache.js';
import { MetadataCursor, wrapDecodeError } from './metadata.js';
import type { ImageContext } from './context.js';
import type { FileLayout, SquashfsInode } from './inode.js';

/**
 * Block size words (file block lists and fragment entries): bits 0-23 stored length (0 = sparse
 * block of zeros), bit 24 stored uncompressed, bits 25-31 must be zero.
 */
export const WORD_LENGTH_MASK = 0x00ffffff;
const WORD_UNCOMPRESSED = 0x01000000;
const WORD_RESERVED = 0xfe000000;
/** Block-list words decoded per chunk (8 KiB of list); per-file checkpoints every chunk. */
const CHUNK_WORDS = 2048;
/** Contiguous blocks of one file are fetched with one source read up to this many bytes. */
const MAX_RUN_BYTES = 8 << 20;
/** Largest single read() (callers stream anything bigger). */
export const MAX_READ_BYTES = 256 << 20;
/** Fragment table entry: `u64 start, u32 size word, u32 unused`. */
export const FRAGMENT_ENTRY_SIZE = 16;
/** Checked fragment table entries kept (16 bytes each on disk; a read of a cached tail needs no await). */
const FRAGMENT_ENTRIES_KEPT = 4096;

/** A fragment table entry, checked against the image. */
interface FragmentEntry {
  start: number;
  word: number;
}

/**
 * Marks a promise as observed: a block load may fail while the planner still awaits block-list
 * chunks (or nobody waits at all: readahead); its real consumer still sees the rejection.
 */
function observed<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** Scratch buffers kept for direct reads (one per concurrent read; more are allocated and dropped). */
const SCRATCH_KEPT = 16;

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new SquashfsError('EINVAL', `invalid read range offset ${offset} length ${length}`);
  }
}

export interface DataBlock {
  /** The size word it was decoded with: a cached block is reused only for the same word. */
  word: number;
  /** Decoded bytes; a block of the cache may sit in a reused buffer (util/arena.ts): check `valid` when copying. */
  data: Lease;
}

/** A file block's bytes: they begin at `start` in the lease (a fragment tail inside its fragment block). */
interface BlockView {
  lease: Lease;
  start: number;
}

/** Decoded block-list chunk: size words and absolute start of each block. */
interface BlockChunk {
  words: Uint32Array;
  starts: Float64Array;
}

/** Where chunk k of a file's block list begins: metadata position and absolute data position. */
interface Checkpoint {
  block: number;
  offset: number;
  pos: number;
}

/**
 * One block of a read: decoded bytes now (cache hit), later (promise), read straight into the
 * caller's buffer (direct), or none of these (sparse: zeros).
 */
interface Piece {
  /** Index of the block in the file (blockCount = the fragment tail). */
  block: number;
  /** File offset of the block's first byte. */
  fileStart: number;
  promise: Promise<BlockView> | undefined;
  data: BlockView | undefined;
  /** Image position of an uncompressed block read from the source without the block cache (ImageIO.direct). */
  direct: number | undefined;
}

export class FileData {
  readonly cache: BlockCache<DataBlock>;
  /** Blocks decoded again because their cached buffer was reused before a read copied it. */
  redecoded = 0;
  /** Buffers of decoded blocks, reused as the cache turns over (util/arena.ts says why). */
  private readonly arena: Arena;
  private readonly chunks = entryLru<string, BlockChunk>(1024);
  private readonly fragmentEntries = entryLru<number, FragmentEntry>(FRAGMENT_ENTRIES_KEPT);
  private readonly checkpoints = entryLru<number, Checkpoint[]>(4096);
  /** Where the last read of each recently read file ended: a read starting there is sequential. */
  private readonly lastEnd = entryLru<number, number>(1024);
  /** Reused buffers for uncompressed blocks read without the block cache (see readDirect). */
  private readonly scratch: Uint8Array[] = [];
  /** Whether the decompressor has been asked to warm up (readStored). */
  private warmed = false;

  constructor(
    private readonly ctx: ImageContext,
    cacheBytes: number,
    /** Bytes fetched ahead of a sequential reader (0 disables). */
    private readonly readaheadBytes: number,
  ) {
    const bs = ctx.sb.blockSize;
    this.arena = new Arena(bs, Math.ceil(cacheBytes / bs));
    this.cache = new BlockCache<DataBlock>(
      cacheBytes,
      (b) => b.data.footprint + 64,
      (b) => this.arena.give(b.data),
    );
  }

  /**
   * Block bytes as stored in the image. The first such read also warms the decompressor
   * (lz4 loads its native decoder, ~10 ms of blocking work) from a later macrotask, once the read's
   * GET is on its way: the load then overlaps the wait for the network, where from the mount's
   * readiness it held up the first file's FUSE requests (measured: 3-5 ms of mount + first file at
   * 5 ms RTT), and never runs for a reader that reads no data.
   */
  private readStored(pos: number, length: number, what: 'file data' | 'fragment block'): Promise<Uint8Array> {
    const read = this.ctx.io.read(pos, length, what);
    if (!this.warmed) {
      this.warmed = true;
      const { decompressor } = this.ctx;
      if (decompressor.warm) setImmediate(() => decompressor.warm!());
    }
    return read;
  }

  /** Bytes [offset, offset + length) of a file, short only at its end. */
  async read(inode: SquashfsInode, offset: number, length: number): Promise<Uint8Array> {
    const f = inode.file!;
    checkRange(offset, length);
    const end = Math.min(f.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    if (end - offset > MAX_READ_BYTES)
      throw new SquashfsError('EINVAL', `read of ${end - offset} bytes is larger than ${MAX_READ_BYTES}: use a stream`);
    const out = Buffer.allocUnsafe(end - offset);
    await this.readInto(inode, offset, out);
    return out;
  }

  /**
   * Fills `target` with the file's bytes from `offset` (no intermediate buffer: FUSE hands one in).
   * Returns how many bytes were written: less than target.length only at the end of the file.
   */
  async readInto(inode: SquashfsInode, offset: number, target: Uint8Array): Promise<number> {
    const f = inode.file!;
    checkRange(offset, target.length);
    const end = Math.min(f.size, offset + target.length);
    if (end <= offset) return 0;
    const out = target;
    const bs = this.ctx.sb.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const pieces = await this.plan(inode, first, last, false);

    // Sequential reader: start fetching and decoding what comes next while this read completes.
    const sequential = this.lastEnd.get(inode.ref) === offset;
    this.lastEnd.set(inode.ref, end);
    if (sequential && this.readaheadBytes > 0 && last + 1 < f.blockCount) {
      const ahead = Math.min(
        f.blockCount - 1,
        last + Math.max(1, Math.ceil(Math.max(this.readaheadBytes, end - offset) / bs)),
      );
      this.plan(inode, last + 1, ahead, true).catch(() => undefined);
    }

    // Every block is copied the moment it is at hand, after checking that its buffer still holds it.
    const copy = (p: Piece, view: BlockView): void => {
      const from = Math.max(offset, p.fileStart);
      const to = Math.min(end, p.fileStart + bs, f.size);
      const at = view.start - p.fileStart;
      out.set(view.lease.bytes.subarray(at + from, at + to), from - offset);
    };
    const settle = async (p: Piece, view: BlockView): Promise<void> => {
      if (view.lease.valid) return copy(p, view);
      // Evicted and its buffer reused before this read got to it: decode it again, outside the cache.
      this.redecoded++;
      copy(p, await this.blockUncached(inode, p.block));
    };
    await Promise.all(
      pieces.map((p) => {
        const from = Math.max(offset, p.fileStart);
        const to = Math.min(end, p.fileStart + bs, f.size);
        if (p.direct !== undefined) {
          // Part of a stored block: read just that part, nothing around it.
          const partial = to - from < Math.min(bs, f.size - p.fileStart);
          return this.readDirect(p.direct + (from - p.fileStart), out, from - offset, to - from, partial);
        }
        if (p.data !== undefined) return settle(p, p.data);
        if (p.promise !== undefined) return p.promise.then((view) => settle(p, view));
        out.fill(0, from - offset, to - offset); // sparse
        return undefined;
      }),
    );
    return end - offset;
  }

  /**
   * readInto done synchronously when it can be: a read within the file's fragment tail whose
   * fragment block is decoded and in the cache (most reads of small files). Undefined otherwise:
   * then readInto does it (and reports any error).
   */
  readTailNow(inode: SquashfsInode, offset: number, target: Uint8Array): number | undefined {
    const f = inode.file!;
    const bs = this.ctx.sb.blockSize;
    const tailStart = f.blockCount * bs;
    if (f.fragmentIndex === undefined || offset < tailStart || !Number.isSafeInteger(offset)) return undefined;
    const end = Math.min(f.size, offset + target.length);
    if (end <= offset) return 0;
    const entry = this.fragmentEntries.get(f.fragmentIndex);
    if (entry === undefined) return undefined;
    const blk = this.cache.get(entry.start);
    if (blk === undefined || blk.word !== entry.word || !blk.data.valid) return undefined;
    const at = f.fragmentOffset - tailStart;
    if (f.fragmentOffset + (f.size - tailStart) > blk.data.bytes.length) return undefined; // corrupt: readInto says so
    target.set(blk.data.bytes.subarray(at + offset, at + end));
    return end - offset;
  }

  /** Block `b` of a file decoded afresh into a buffer of its own (nothing cached). */
  private async blockUncached(inode: SquashfsInode, b: number): Promise<BlockView> {
    const f = inode.file!;
    if (b >= f.blockCount) return this.fragmentTail(f, false);
    const k = Math.floor(b / CHUNK_WORDS);
    const chunk = await this.chunk(inode.ref, f, k);
    const word = chunk.words[b - k * CHUNK_WORDS]!;
    const pos = chunk.starts[b - k * CHUNK_WORDS]!;
    const expected =
      b === f.blockCount - 1 && f.fragmentIndex === undefined
        ? f.size - b * this.ctx.sb.blockSize
        : this.ctx.sb.blockSize;
    const blk = await this.decode(await this.readStored(pos, word & WORD_LENGTH_MASK, 'file data'), word, pos, false);
    return { lease: this.checkBlock(blk, word, expected, pos), start: 0 };
  }

  /**
   * Copies `length` image bytes at `pos` into `out` at `at` through a reused scratch buffer. Not
   * straight into `out`: that may be FUSE's request memory, which libfuse frees once a timed-out
   * request is answered while the read could still be writing to it; a copy on this thread cannot.
   */
  private async readDirect(pos: number, out: Uint8Array, at: number, length: number, exact: boolean): Promise<void> {
    const scratch = this.scratch.pop() ?? Buffer.allocUnsafe(this.ctx.sb.blockSize);
    try {
      const view = scratch.subarray(0, length);
      await this.ctx.io.readInto(pos, view, 'file data', exact ? { exact } : undefined);
      out.set(view, at);
    } finally {
      if (this.scratch.length < SCRATCH_KEPT) this.scratch.push(scratch);
    }
  }

  /**
   * Starts loading blocks [first, last] of a file: cache hits, in-flight loads, and runs of
   * contiguous uncached blocks fetched with one source read each. `prefetch` only warms the cache.
   * Every block promise is marked observed() as it starts, so a failure never goes unhandled.
   */
  private async plan(inode: SquashfsInode, first: number, last: number, prefetch: boolean): Promise<Piece[]> {
    const pieces: Piece[] = [];
    await this.planInto(inode, first, last, prefetch, pieces);
    return pieces;
  }

  private async planInto(
    inode: SquashfsInode,
    first: number,
    last: number,
    prefetch: boolean,
    pieces: Piece[],
  ): Promise<void> {
    const f = inode.file!;
    const bs = this.ctx.sb.blockSize;
    // Pending run of contiguous uncached blocks, fetched with one source read.
    let run: { pos: number; bytes: number; blocks: { word: number; expected: number; piece: Piece }[] } | undefined;
    const flush = (): void => {
      if (run === undefined) return;
      const r = run;
      run = undefined;
      const fetched = this.readStored(r.pos, r.bytes, 'file data');
      // Errors surface through the pieces' promises.
      fetched.catch(() => undefined);
      let at = 0;
      for (const blk of r.blocks) {
        const rel = at;
        const len = blk.word & WORD_LENGTH_MASK;
        at += len;
        const pos = r.pos + rel;
        blk.piece.promise = observed(
          this.cache
            .load(pos, () => fetched.then((buf) => this.decode(buf.subarray(rel, rel + len), blk.word, pos)))
            .then((b) => ({ lease: this.checkBlock(b, blk.word, blk.expected, pos), start: 0 })),
        );
      }
    };

    let chunk: BlockChunk | undefined;
    let chunkIndex = -1;
    try {
      for (let b = first; b <= last; b++) {
        const piece: Piece = { block: b, fileStart: b * bs, promise: undefined, data: undefined, direct: undefined };
        pieces.push(piece);
        if (b >= f.blockCount) {
          flush();
          if (!prefetch) piece.promise = observed(this.fragmentTail(f));
          continue;
        }
        const k = Math.floor(b / CHUNK_WORDS);
        if (k !== chunkIndex) {
          chunk = await this.chunk(inode.ref, f, k);
          chunkIndex = k;
        }
        const word = chunk!.words[b - k * CHUNK_WORDS]!;
        const pos = chunk!.starts[b - k * CHUNK_WORDS]!;
        const len = word & WORD_LENGTH_MASK;
        const expected = b === f.blockCount - 1 && f.fragmentIndex === undefined ? f.size - b * bs : bs;
        if (len === 0) {
          flush();
          continue; // sparse: zeros
        }
        const hit = this.cache.get(pos);
        if (hit !== undefined && hit.word === word) {
          flush();
          if (!prefetch) piece.data = { lease: this.checkBlock(hit, word, expected, pos), start: 0 };
          continue;
        }
        const pending = hit === undefined ? this.cache.pending(pos) : undefined;
        if (pending !== undefined) {
          flush();
          piece.promise = observed(
            pending.then((blk) => ({ lease: this.checkBlock(blk, word, expected, pos), start: 0 })),
          );
          continue;
        }
        if (pos + len > this.ctx.sb.bytesUsed)
          throw corrupt('file data', `block ${b} runs past bytes_used (inode ${inode.stat.ino})`, pos);
        if (hit !== undefined) {
          // Same position, different word (hostile image): decode on its own, uncached.
          flush();
          if (prefetch) continue;
          piece.promise = observed(
            this.readStored(pos, len, 'file data')
              .then((buf) => this.decode(buf, word, pos, false))
              .then((blk) => ({ lease: this.checkBlock(blk, word, expected, pos), start: 0 })),
          );
          continue;
        }
        if (word & WORD_UNCOMPRESSED && this.ctx.io.direct) {
          // Stored as is and the source copies into the caller's buffer: no block cache, no extra
          // copy (the source's own cache holds it); readahead leaves it to the source too.
          flush();
          if (len !== expected)
            throw corrupt('data block', `uncompressed block ${b} holds ${len} bytes, expected ${expected}`, pos);
          if (!prefetch) piece.direct = pos;
          continue;
        }
        if (run !== undefined && (run.pos + run.bytes !== pos || run.bytes + len > MAX_RUN_BYTES)) flush();
        if (run === undefined) run = { pos, bytes: 0, blocks: [] };
        run.blocks.push({ word, expected, piece });
        run.bytes += len;
      }
    } finally {
      flush();
    }
  }

  /** `pooled`: the block goes into the cache, so it may take a reused buffer (arena). */
  private async decode(stored: Uint8Array, word: number, pos: number, pooled = true): Promise<DataBlock> {
    if (word & WORD_UNCOMPRESSED) return { word, data: this.keep(stored, pooled) };
    let data: Uint8Array;
    try {
      data = await this.ctx.decompressor.decompress(stored, this.ctx.sb.blockSize);
    } catch (e) {
      throw wrapDecodeError(e, 'data block', pos);
    }
    if (data.length > this.ctx.sb.blockSize)
      throw corrupt('data block', `decodes to ${data.length} bytes, more than the block size`, pos);
    return { word, data: this.keep(data, pooled) };
  }

  /**
   * Decoded bytes as a cache entry: copied into a reused buffer when pooled and at least half a
   * block (a short tail would waste most of a slot), else kept as they are. A view into a larger
   * buffer (a multi-block source read) is copied, so the cache never pins more than it counts.
   */
  private keep(bytes: Uint8Array, pooled: boolean): Lease {
    if (pooled && bytes.length * 2 >= this.arena.slotBytes) {
      const lease = this.arena.take(bytes.length);
      lease.bytes.set(bytes);
      return lease;
    }
    return new Lease(bytes.length * 2 < bytes.buffer.byteLength ? bytes.slice() : bytes);
  }

  private checkBlock(b: DataBlock, word: number, expected: number, pos: number): Lease {
    if (b.word !== word) throw corrupt('data block', 'block shared with a different size word', pos);
    const n = b.data.bytes.length;
    if (n !== expected) throw corrupt('data block', `decodes to ${n} bytes, expected ${expected}`, pos);
    return b.data;
  }

  /**
   * The file's tail from its fragment block (checked: offset + tail <= decoded fragment length).
   * `cached` false: decoded into a buffer of its own, the block cache untouched.
   */
  private async fragmentTail(f: FileLayout, cached = true): Promise<BlockView> {
    if (f.fragmentIndex === undefined) throw corrupt('file', 'tail without a fragment');
    const { start, word } = await this.fragmentEntry(f.fragmentIndex);
    const len = word & WORD_LENGTH_MASK;
    const uncached = async (): Promise<DataBlock> =>
      this.decode(await this.readStored(start, len, 'fragment block'), word, start, false);
    let blk = cached
      ? await this.cache.load(start, async () =>
          this.decode(await this.readStored(start, len, 'fragment block'), word, start),
        )
      : await uncached();
    if (blk.word !== word) blk = await uncached();
    const tail = f.size % this.ctx.sb.blockSize;
    const n = blk.data.bytes.length;
    if (f.fragmentOffset + tail > n) {
      throw corrupt('fragment block', `tail [${f.fragmentOffset}, +${tail}) beyond the fragment's ${n} bytes`, start);
    }
    return { lease: blk.data, start: f.fragmentOffset };
  }

  /** Entry `index` of the fragment table, checked (kept: see FRAGMENT_ENTRIES_KEPT). */
  private async fragmentEntry(index: number): Promise<FragmentEntry> {
    const kept = this.fragmentEntries.get(index);
    if (kept !== undefined) return kept;
    const table = this.ctx.fragments;
    if (table === undefined) throw corrupt('file', 'tail without a fragment');
    const e = await table.entry(index);
    const start = u64(e, 0);
    const word = u32(e, 8);
    const len = word & WORD_LENGTH_MASK;
    const S = 'fragment table';
    if (word & WORD_RESERVED) throw corrupt(S, `fragment ${index} size word 0x${word.toString(16)} has reserved bits set`);
    if (len === 0 || len > this.ctx.sb.blockSize) throw corrupt(S, `fragment ${index} stored length ${len} not in 1..block size`);
    if (start + len > this.ctx.sb.bytesUsed) throw corrupt(S, `fragment ${index} runs past bytes_used`, start);
    const entry = { start, word };
    this.fragmentEntries.set(index, entry);
    return entry;
  }

  /** Block-list chunk k of a file, decoding the list up to it once (checkpoints per chunk). */
  private async chunk(ref: number, f: FileLayout, k: number): Promise<BlockChunk> {
    const key = `${ref}:${k}`;
    const hit = this.chunks.get(key);
    if (hit !== undefined) return hit;
    let cps = this.checkpoints.get(ref);
    if (cps === undefined) {
      cps = [{ block: f.listBlock, offset: f.listOffset, pos: f.blocksStart }];
      this.checkpoints.set(ref, cps);
    }
    // Checkpoint k is known only once chunk k-1 was decoded: walk forward from the last known one.
    while (cps.length <= k) {
      const i = cps.length - 1;
      this.chunks.set(`${ref}:${i}`, await this.decodeChunk(f, cps, i));
    }
    const again = this.chunks.get(key);
    if (again !== undefined) return again;
    const result = await this.decodeChunk(f, cps, k);
    this.chunks.set(key, result);
    return result;
  }

  private async decodeChunk(f: FileLayout, cps: Checkpoint[], k: number): Promise<BlockChunk> {
    const cp = cps[k]!;
    const n = Math.min(CHUNK_WORDS, f.blockCount - k * CHUNK_WORDS);
    const cursor = new MetadataCursor(this.ctx.meta, this.ctx.inodeRegion, cp.block, cp.offset);
    const raw = await cursor.read(n * 4);
    const words = new Uint32Array(n);
    const starts = new Float64Array(n);
    const bs = this.ctx.sb.blockSize;
    let pos = cp.pos;
    for (let i = 0; i < n; i++) {
      const w = u32(raw, i * 4);
      const len = w & WORD_LENGTH_MASK;
      if (w & WORD_RESERVED || len > bs) {
        throw corrupt(
          'block list',
          `block ${k * CHUNK_WORDS + i} size word 0x${w.toString(16)} invalid (block size ${bs})`,
          cp.block,
        );
      }
      words[i] = w;
      starts[i] = pos;
      pos += len;
    }
    if (cps.length === k + 1) cps.push({ block: cursor.block, offset: cursor.offset, pos });
    return { words, starts };
  }
}
