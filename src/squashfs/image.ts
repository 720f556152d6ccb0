import { Readable } from 'node:stream';
import { entryLru } from '../util/entry-lru.js';
import { SquashfsError, corrupt } from './errors.js';
import type { ByteSource } from './source.js';
import { ImageIO } from './io.js';
import { u16, u32, u64 } from './bytes.js';
import { BlockCache } from './block-cache.js';
import { MetadataReader, wrapDecodeError, type MetadataBlock, type Region } from './metadata.js';
import { LookupTable } from './lookup-table.js';
import { XattrTable } from './xattr.js';
import { readInode, SquashfsInode, type DirectoryLayout } from './inode.js';
import { findEntry, MAX_NAME } from './directory.js';
import { keyBytes, type Listing, ListingCache, nameKey, nameKeyOf, type ListedEntry } from './listing.js';
import { FileData, FRAGMENT_ENTRY_SIZE } from './data.js';
import { SubtreePrefetch } from './subtree-prefetch.js';
import type { ImageContext } from './context.js';
import {
  FLAG_COMPRESSOR_OPTIONS,
  METADATA_BLOCK_SIZE,
  SUPERBLOCK_SIZE,
  parseSuperblock,
  type Superblock,
} from './superblock.js';
import { loadDecompressor, type Decompressor } from './compression/index.js';
import type { DirEntry, Inode, InodeRef, ReaderOptions, SquashfsReader, Stat, StatFs, SuperblockInfo } from './types.js';

const DEFAULT_CACHE_BYTES = 64 << 20;
const DEFAULT_READAHEAD_BYTES = 1 << 20;
const ID_ENTRY_SIZE = 4;
const EXPORT_ENTRY_SIZE = 8;
/** Decoded inodes kept (they are small; FUSE getattr/lookup hit them constantly). */
const INODE_CACHE_ENTRIES = 16384;
/** Parsed directory listings kept (estimated heap bytes: some 30,000 entries). */
const LISTING_CACHE_BYTES = 4 << 20;
/**
 * A lookup in a directory whose listing is at most this long parses all of it (at most twice the cost
 * of the scan a lookup would do, and the next lookups there are free); a longer one is searched
 * through its index unless readdir has parsed it already.
 */
const PARSE_WHOLE_LISTING_BYTES = 16 << 10;
/** Stream chunk: a multiple of every block size, so chunks after the first are block-aligned. */
const STREAM_CHUNK = 1 << 20;

export interface CacheStats {
  metadataHits: number;
  metadataMisses: number;
  metadataBytes: number;
  dataHits: number;
  dataMisses: number;
  dataBytes: number;
  /** Decoded blocks evicted (their buffer reused) before a read copied them, so decoded again. */
  dataRedecoded: number;
}

/**
 * A SquashFS 4.0 image read through a ByteSource. Everything it reports matches the Linux kernel's
 * squashfs driver (st_ino = inode number, directory size = listing + 3, atime = ctime = mtime).
 * All failures are SquashfsErrors.
 */
export class SquashfsImage implements SquashfsReader {
  readonly info: SuperblockInfo;
  /** Promises while decoding, the inodes themselves once decoded (for inodeNow). */
  private readonly inodes = entryLru<number, Promise<SquashfsInode> | SquashfsInode>(INODE_CACHE_ENTRIES);
  private readonly listings: ListingCache;
  private closed = false;
  /** Listed directories' data fetched ahead, when the source takes prefetch hints. */
  private readonly subtrees?: SubtreePrefetch;

  private constructor(
    private readonly ctx: ImageContext,
    private readonly metaCache: BlockCache<MetadataBlock>,
    private readonly data: FileData,
  ) {
    const sb = ctx.sb;
    this.listings = new ListingCache(ctx, LISTING_CACHE_BYTES);
    const source = ctx.io.source;
    if (source.prefetch && ctx.fragments !== undefined) {
      const tree = {
        entries: async (dir: SquashfsInode) => (await this.listings.get(dir.ref, dir.dir!)).entries.map((e) => e.ref),
        inode: (ref: InodeRef) => this.inode(ref),
      };
      this.subtrees = new SubtreePrefetch(ctx, tree, (offset, length) => source.prefetch!(offset, length));
    }
    this.info = {
      compressor: ctx.decompressor.name,
      blockSize: sb.blockSize,
      inodeCount: sb.inodeCount,
      bytesUsed: sb.bytesUsed,
      modTime: sb.modTime,
      fragmentCount: sb.fragmentCount,
      idCount: sb.idCount,
      flags: sb.flags,
      exportTable: ctx.exports !== undefined,
      xattrs: ctx.xattrs !== undefined,
    };
  }

  /** Opens an image: superblock, compression options, lookup tables; pins the metadata span in the source. */
  static async open(source: ByteSource, options: ReaderOptions = {}): Promise<SquashfsImage> {
    try {
      return await SquashfsImage.openUnchecked(source, options);
    } catch (e) {
      throw asSquashfsError(e);
    }
  }

  private static async openUnchecked(source: ByteSource, options: ReaderOptions): Promise<SquashfsImage> {
    const io = new ImageIO(source);
    if (!Number.isSafeInteger(source.size) || source.size < SUPERBLOCK_SIZE) {
      throw corrupt('superblock', `image is ${source.size} bytes, smaller than a superblock (${SUPERBLOCK_SIZE})`);
    }
    const sb = parseSuperblock(await io.read(0, SUPERBLOCK_SIZE, 'superblock'), source.size);
    io.limit = sb.bytesUsed;
    const decompressor = await openDecompressor(io, sb);
    if (source.retain !== undefined) {
      try {
        await source.retain(sb.inodeTableStart, sb.bytesUsed - sb.inodeTableStart);
      } catch (e) {
        throw asSquashfsError(e, 'metadata span');
      }
    }
    const cacheBytes = Math.max(1 << 20, options.cacheBytes ?? DEFAULT_CACHE_BYTES);
    const metaCache = new BlockCache<MetadataBlock>(Math.max(1 << 20, Math.floor(cacheBytes / 4)), (b) => b.data.length + 64);
    const meta = new MetadataReader(io, decompressor, metaCache);

    // Tables from the end backwards, each must end where (or before) the next begins.
    const floor = sb.directoryTableStart;
    const idListEnd = sb.idTableStart + Math.ceil((sb.idCount * ID_ENTRY_SIZE) / METADATA_BLOCK_SIZE) * 8;
    const xattrs =
      sb.xattrIdTableStart === undefined ? undefined : await XattrTable.open(io, meta, sb.xattrIdTableStart, sb.bytesUsed, idListEnd);
    const ids = await LookupTable.open('id table', io, meta, {
      listStart: sb.idTableStart,
      listEnd: xattrs?.start ?? sb.bytesUsed,
      count: sb.idCount,
      entrySize: ID_ENTRY_SIZE,
      blocksFloor: floor,
    });
    const exports =
      sb.exportTableStart === undefined
        ? undefined
        : await LookupTable.open('export table', io, meta, {
            listStart: sb.exportTableStart,
            listEnd: ids.firstBlock,
            count: sb.inodeCount,
            entrySize: EXPORT_ENTRY_SIZE,
            blocksFloor: floor,
          });
    const fragments =
      sb.fragmentTableStart === undefined
        ? undefined
        : await LookupTable.open('fragment table', io, meta, {
            listStart: sb.fragmentTableStart,
            listEnd: exports?.firstBlock ?? ids.firstBlock,
            count: sb.fragmentCount,
            entrySize: FRAGMENT_ENTRY_SIZE,
            blocksFloor: floor,
          });
    const directoryEnd = fragments?.firstBlock ?? exports?.firstBlock ?? ids.firstBlock;
    if (directoryEnd <= sb.directoryTableStart) {
      throw corrupt('superblock', `directory table start ${sb.directoryTableStart} not before the next table (${directoryEnd})`);
    }
    const inodeRegion: Region = { name: 'inode table', start: sb.inodeTableStart, end: sb.directoryTableStart };
    const directoryRegion: Region = { name: 'directory table', start: sb.directoryTableStart, end: directoryEnd };

    const idValues = new Map<number, Promise<number>>();
    const idsRead = new Map<number, number>();
    const ctx: ImageContext = {
      sb,
      io,
      meta,
      decompressor,
      inodeRegion,
      directoryRegion,
      ids,
      fragments,
      exports,
      xattrs,
      id(index: number): Promise<number> {
        let v = idValues.get(index);
        if (v === undefined) {
          if (index >= sb.idCount) return Promise.reject(corrupt('id table', `id index ${index} out of range (${sb.idCount} ids)`));
          v = ids.entry(index).then((b) => u32(b, 0));
          v.then(
            (value) => idsRead.set(index, value),
            () => idValues.delete(index),
          );
          idValues.set(index, v);
        }
        return v;
      },
      idNow: (index: number) => idsRead.get(index),
    };
    const image = new SquashfsImage(ctx, metaCache, new FileData(ctx, cacheBytes - Math.floor(cacheBytes / 4), Math.max(0, options.readaheadBytes ?? DEFAULT_READAHEAD_BYTES)));
    await image.root(); // an image whose root is unreadable is refused at open
    return image;
  }

  /** The decoded superblock (for inspection tools). */
  get superblock(): Superblock {
    return this.ctx.sb;
  }

  async root(): Promise<Inode> {
    const root = await this.inode(this.ctx.sb.rootInodeRef);
    if (root.stat.type !== 'directory') throw corrupt('superblock', `root inode is a ${root.stat.type}, not a directory`);
    return root;
  }

  /** The inode at a reference (cached; concurrent requests share one decode). */
  inode(ref: InodeRef): Promise<SquashfsInode> {
    this.checkOpen();
    const kept = this.inodes.get(ref);
    if (kept instanceof SquashfsInode) return Promise.resolve(kept);
    if (kept !== undefined) return kept;
    const p: Promise<SquashfsInode> = readInode(this.ctx, ref).then(
      (inode) => {
        if (this.inodes.peek(ref) === p) this.inodes.set(ref, inode);
        return inode;
      },
      (e: unknown) => {
        this.inodes.delete(ref);
        throw asSquashfsError(e, 'inode');
      },
    );
    this.inodes.set(ref, p);
    return p;
  }

  /** The inode at `ref` if it is decoded already, else undefined. */
  inodeNow(ref: InodeRef): SquashfsInode | undefined {
    const kept = this.inodes.get(ref);
    return kept instanceof SquashfsInode ? kept : undefined;
  }

  /** Inode by inode number through the export table (EUNSUPPORTED without one, EINVAL out of range). */
  async inodeByNumber(ino: number): Promise<SquashfsInode> {
    const table = this.ctx.exports;
    if (table === undefined) throw new SquashfsError('EUNSUPPORTED', 'image has no export table (built with -no-exports?)');
    if (!Number.isInteger(ino) || ino < 1 || ino > this.ctx.sb.inodeCount) {
      throw new SquashfsError('EINVAL', `inode number ${ino} outside 1..${this.ctx.sb.inodeCount}`);
    }
    const ref = await wrap(table.entry(ino - 1).then((b) => u64(b, 0)));
    const inode = await this.inode(ref);
    if (inode.stat.ino !== ino) throw corrupt('export table', `entry for inode ${ino} points at inode ${inode.stat.ino}`);
    return inode;
  }

  async lookup(path: string): Promise<SquashfsInode> {
    let node = (await this.root()) as SquashfsInode;
    const parts: string[] = [];
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        parts.pop();
        continue;
      }
      parts.push(part);
    }
    let walked = '';
    for (const part of parts) {
      if (node.dir === undefined) throw new SquashfsError('ENOTDIR', `${walked}: not a directory (looking up ${path})`, { path });
      walked += '/' + part;
      const next = await this.lookupChild(node, part, path);
      if (next === undefined) throw new SquashfsError('ENOENT', `${walked}: no such file or directory`, { path });
      node = next;
    }
    return node;
  }

  async lookupChild(dir: Inode, name: string, path?: string): Promise<SquashfsInode | undefined> {
    const d = await this.resolve(dir);
    if (d.dir === undefined) throw new SquashfsError('ENOTDIR', `not a directory (inode ${d.stat.ino})`, { path });
    const bytes = Buffer.from(name, 'utf8');
    if (bytes.length > MAX_NAME) throw new SquashfsError('ENAMETOOLONG', `name of ${bytes.length} bytes is too long`, { path });
    if (bytes.length === 0 || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new SquashfsError('EINVAL', `invalid name ${JSON.stringify(name)}`, { path });
    }
    const entry = await wrap(this.findChild(d.ref, d.dir, bytes));
    if (entry === undefined) return undefined;
    return this.entryInode(entry.ref, entry.ino);
  }

  /** lookupChild for a name given as its exact bytes (the kernel engine: names need not be UTF-8). */
  async lookupChildBytes(dir: Inode, name: Uint8Array): Promise<SquashfsInode | undefined> {
    const d = await this.resolve(dir);
    if (d.dir === undefined) throw new SquashfsError('ENOTDIR', `not a directory (inode ${d.stat.ino})`);
    if (name.length > MAX_NAME) throw new SquashfsError('ENAMETOOLONG', `name of ${name.length} bytes is too long`);
    const entry = await wrap(this.findChild(d.ref, d.dir, name));
    if (entry === undefined) return undefined;
    return this.entryInode(entry.ref, entry.ino);
  }

  lookupChildNow(dir: Inode, name: string): SquashfsInode | null | undefined {
    if (this.closed || !(dir instanceof SquashfsInode) || dir.dir === undefined) return undefined;
    const listing = this.listings.peek(dir.ref);
    // Names lookupChild refuses (empty, ".", "..", "/", NUL, too long) are left to it, with its error.
    if (listing === undefined || name.length === 0 || name.length > MAX_NAME || name === '.' || name === '..')
      return undefined;
    if (name.includes('/') || name.includes('\0')) return undefined;
    const key = nameKeyOf(name);
    if (key.length > MAX_NAME) return undefined;
    const entry = listing.byName.get(key);
    if (entry === undefined) return null;
    const inode = this.inodeNow(entry.ref);
    return inode !== undefined && inode.stat.ino === entry.ino ? inode : undefined;
  }

  /** The entry named `name`: from the parsed listing when it is (or should be) kept, else by a scan. */
  private async findChild(
    ref: InodeRef,
    dir: DirectoryLayout,
    name: Uint8Array,
  ): Promise<{ ref: number; ino: number } | undefined> {
    let listing = this.listings.peek(ref);
    if (listing === undefined && dir.listingSize <= PARSE_WHOLE_LISTING_BYTES) {
      try {
        listing = await this.listings.get(ref, dir);
      } catch (e) {
        // A scan still finds the names before a corrupt entry, as the kernel does.
        if (!(e instanceof SquashfsError) || e.code !== 'ECORRUPT') throw e;
      }
    }
    if (listing !== undefined) return listing.byName.get(nameKey(name));
    return findEntry(this.ctx, dir, name);
  }

  private async entryInode(ref: number, ino: number): Promise<SquashfsInode> {
    const inode = await this.inode(ref);
    if (inode.stat.ino !== ino) throw corrupt('directory', `entry says inode ${ino}, inode at ${ref} is ${inode.stat.ino}`);
    return inode;
  }

  async stat(target: Inode | string): Promise<Stat> {
    return { ...(await this.resolve(target)).stat };
  }

  async readdir(dir: Inode | string): Promise<DirEntry[]> {
    const d = await this.resolve(dir);
    if (d.dir === undefined) throw new SquashfsError('ENOTDIR', `not a directory (inode ${d.stat.ino})`, { path: pathOf(dir) });
    const listing = await wrap(this.listings.get(d.ref, d.dir));
    this.subtrees?.listed(d);
    return Promise.all(listing.entries.map((e) => this.dirEntry(e)));
  }

  /**
   * A directory's parsed listing, names as exact bytes (latin1 keys: see listing.ts): what the kernel
   * engine answers READDIRPLUS from. Counts as a listing for the subtree prefetch.
   */
  async listing(dir: Inode): Promise<Listing> {
    const d = await this.resolve(dir);
    if (d.dir === undefined) throw new SquashfsError('ENOTDIR', `not a directory (inode ${d.stat.ino})`);
    const listing = this.listings.peek(d.ref) ?? (await wrap(this.listings.get(d.ref, d.dir)));
    this.subtrees?.listed(d);
    return listing;
  }

  /**
   * Whether reading `dir`'s files now costs no fetch: true at once for a source that is local (no
   * prefetch hints), else once the subtree span its listing hinted has arrived; false when none was
   * hinted (a subtree over the hint's limits, the root) or it did not arrive.
   */
  async filesAtHand(dir: Inode): Promise<boolean> {
    if (this.subtrees === undefined) return true;
    return !this.closed && dir instanceof SquashfsInode ? ((await this.subtrees.arrival(dir)) ?? false) : false;
  }

  /** The listing when it is parsed already (no subtree hint: the caller had it from listing()). */
  listingNow(dir: Inode): Listing | undefined {
    return dir instanceof SquashfsInode && dir.dir !== undefined && !this.closed ? this.listings.peek(dir.ref) : undefined;
  }

  /** The inode a listed entry names, checked against the number the entry carries. */
  entryInodeOf(e: ListedEntry): Promise<SquashfsInode> {
    return this.entryInode(e.ref, e.ino);
  }

  private async dirEntry(e: ListedEntry): Promise<DirEntry> {
    const inode = await this.entryInode(e.ref, e.ino);
    return { name: keyBytes(e.key).toString('utf8'), type: inode.stat.type, ino: inode.stat.ino, ref: e.ref };
  }

  async readlink(target: Inode | string): Promise<string> {
    const t = await this.resolve(target);
    if (t.target === undefined) throw new SquashfsError('EINVAL', `not a symlink (inode ${t.stat.ino})`, { path: pathOf(target) });
    return Buffer.from(t.target).toString('utf8');
  }

  /** The raw bytes of a symlink target (names and targets are bytes; readlink decodes UTF-8). */
  async readlinkBytes(target: Inode | string): Promise<Uint8Array> {
    const t = await this.resolve(target);
    if (t.target === undefined) throw new SquashfsError('EINVAL', `not a symlink (inode ${t.stat.ino})`, { path: pathOf(target) });
    return t.target.slice();
  }

  async listXattrs(target: Inode | string): Promise<string[]> {
    return (await this.xattrs(target)).map((x) => x.name);
  }

  async getXattr(target: Inode | string, name: string): Promise<Uint8Array> {
    const found = (await this.xattrs(target)).find((x) => x.name === name);
    if (found === undefined) throw new SquashfsError('ENODATA', `no attribute ${name}`, { path: pathOf(target) });
    return found.value.slice();
  }

  /** All extended attributes of an inode (full names, values). */
  async xattrs(target: Inode | string): Promise<{ name: string; value: Uint8Array }[]> {
    const t = await this.resolve(target);
    if (t.xattrIndex === undefined || this.ctx.xattrs === undefined) return [];
    return wrap(this.ctx.xattrs.read(t.xattrIndex));
  }

  async read(file: Inode | string, offset: number, length: number): Promise<Uint8Array> {
    const f = await this.resolve(file);
    return wrap(this.data.read(this.fileOf(f, file), offset, length));
  }

  /**
   * Fills `target` with file bytes from `offset` without an intermediate buffer (the FUSE read
   * path). Returns the byte count, short only at the end of the file.
   */
  async readInto(file: Inode | string, offset: number, target: Uint8Array): Promise<number> {
    const f = await this.resolve(file);
    return wrap(this.data.readInto(this.fileOf(f, file), offset, target));
  }

  /**
   * readInto without waiting, when the bytes are at hand (a small file's tail in a cached fragment
   * block); undefined when they are not, or for anything but an open image's regular file: then
   * readInto does the read and reports what is wrong.
   */
  readIntoNow(file: Inode, offset: number, target: Uint8Array): number | undefined {
    if (this.closed || !(file instanceof SquashfsInode) || file.file === undefined) return undefined;
    return this.data.readTailNow(file, offset, target);
  }

  createReadStream(file: Inode | string, options: { start?: number; end?: number } = {}): Readable {
    let pos = options.start ?? 0;
    let inode: SquashfsInode | undefined;
    let end = Infinity;
    const readChunk = async (): Promise<Uint8Array | null> => {
      if (inode === undefined) {
        inode = this.fileOf(await this.resolve(file), file);
        // `end` is inclusive, as in fs.createReadStream.
        end = Math.min(inode.stat.size, options.end === undefined ? Infinity : options.end + 1);
      }
      if (pos >= end) return null;
      const next = Math.min(end, (Math.floor(pos / STREAM_CHUNK) + 1) * STREAM_CHUNK);
      const chunk = await this.data.read(inode, pos, next - pos);
      pos += chunk.length;
      return chunk;
    };
    return new Readable({
      highWaterMark: STREAM_CHUNK,
      read() {
        readChunk().then(
          (chunk) => this.push(chunk),
          (e: unknown) => this.destroy(asSquashfsError(e)),
        );
      },
    });
  }

  statfs(): StatFs {
    const sb = this.ctx.sb;
    return { blockSize: sb.blockSize, blocks: Math.ceil(sb.bytesUsed / sb.blockSize), files: sb.inodeCount, nameMax: MAX_NAME };
  }

  cacheStats(): CacheStats {
    return {
      metadataHits: this.metaCache.hits,
      metadataMisses: this.metaCache.misses,
      metadataBytes: this.metaCache.size,
      dataHits: this.data.cache.hits,
      dataMisses: this.data.cache.misses,
      dataBytes: this.data.cache.size,
      dataRedecoded: this.data.redecoded,
    };
  }

  /** Closes the underlying source. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inodes.clear();
    this.listings.clear();
    this.metaCache.clear();
    this.data.cache.clear();
    try {
      await this.ctx.io.source.close?.();
    } catch (e) {
      throw asSquashfsError(e);
    }
  }

  private fileOf(f: SquashfsInode, target: Inode | string): SquashfsInode {
    if (f.file !== undefined) return f;
    if (f.dir !== undefined) throw new SquashfsError('EISDIR', `is a directory (inode ${f.stat.ino})`, { path: pathOf(target) });
    throw new SquashfsError('EINVAL', `not a regular file (inode ${f.stat.ino}, ${f.stat.type})`, { path: pathOf(target) });
  }

  private async resolve(target: Inode | string): Promise<SquashfsInode> {
    this.checkOpen();
    if (typeof target === 'string') return this.lookup(target);
    if (target instanceof SquashfsInode) return target;
    return this.inode(target.ref);
  }

  private checkOpen(): void {
    if (this.closed) throw new SquashfsError('EINVAL', 'image is closed');
  }
}

function pathOf(target: Inode | string): string | undefined {
  return typeof target === 'string' ? target : undefined;
}

/** Reads the compression-options block (flag 0x0400) and builds the decompressor with it. */
async function openDecompressor(io: ImageIO, sb: Superblock): Promise<Decompressor> {
  if (!(sb.flags & FLAG_COMPRESSOR_OPTIONS)) return loadDecompressor(sb.compressorId);
  const S = 'compression options';
  const pos = SUPERBLOCK_SIZE;
  if (pos + 2 >= sb.inodeTableStart) throw corrupt(S, 'no room before the inode table', pos);
  const header = u16(await io.read(pos, 2, S), 0);
  const length = header & 0x7fff;
  if (length === 0 || length > METADATA_BLOCK_SIZE) throw corrupt(S, `block length ${length} not in 1..8192`, pos);
  if (pos + 2 + length > sb.inodeTableStart) throw corrupt(S, 'block runs into the inode table', pos);
  let payload = await io.read(pos + 2, length, S);
  if (!(header & 0x8000)) {
    // The kernel only reads it stored; accept a compressed one by decoding with default options.
    const plain = await loadDecompressor(sb.compressorId);
    try {
      payload = await plain.decompress(payload, METADATA_BLOCK_SIZE);
    } catch (e) {
      throw wrapDecodeError(e, S, pos);
    }
  }
  return loadDecompressor(sb.compressorId, payload);
}

function asSquashfsError(e: unknown, structure?: string): SquashfsError {
  if (e instanceof SquashfsError) return e;
  const msg = (e as Error)?.message ?? String(e);
  return new SquashfsError('EIO', `${structure ? structure + ': ' : ''}${msg}`, { structure, cause: e });
}

/** Every failure leaves as a SquashfsError (a bug surfaces as EIO with its cause, not as a TypeError). */
async function wrap<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw asSquashfsError(e);
  }
}
