import { corrupt } from './errors.js';
import { u16, u32, u64 } from './bytes.js';
import { MetadataCursor } from './metadata.js';
import type { ImageContext } from './context.js';
import { METADATA_BLOCK_SIZE, NONE32 } from './superblock.js';
import { S_IFMT_OF, type FileType, type Inode, type InodeRef, type Stat } from './types.js';


/** Inode type numbers (1..7 basic, 8..14 extended = basic + 7). */
const BASIC_TYPES: readonly FileType[] = ['directory', 'file', 'symlink', 'block-device', 'char-device', 'fifo', 'socket'];
export const INODE_HEADER_SIZE = 16;
/** The kernel refuses symlink targets longer than a page (PATH_MAX). */
export const MAX_SYMLINK_TARGET = 4096;

export function fileTypeOf(basicType: number): FileType | undefined {
  return BASIC_TYPES[basicType - 1];
}

/** Where a directory's listing lives (directory table) and where its index follows the inode (inode table). */
export interface DirectoryLayout {
  /** Listing's first block, relative to directory_table_start. */
  readonly blockStart: number;
  readonly blockOffset: number;
  /** Bytes of headers and entries: stored file_size - 3. */
  readonly listingSize: number;
  readonly parentIno: number;
  readonly indexCount: number;
  /** Inode-table position right after the extended directory inode, where the index entries start. */
  readonly indexBlock: number;
  readonly indexOffset: number;
}

export interface FileLayout {
  readonly blocksStart: number;
  readonly size: number;
  /** undefined when the file has no tail in a fragment. */
  readonly fragmentIndex: number | undefined;
  readonly fragmentOffset: number;
  /** Number of full (or short final) blocks in the block list. */
  readonly blockCount: number;
  /** Inode-table position of the block-size words. */
  readonly listBlock: number;
  readonly listOffset: number;
}

/** A decoded inode: public `ref` + `stat`, plus the layout the reader needs. */
export class SquashfsInode implements Inode {
  constructor(
    readonly ref: InodeRef,
    readonly stat: Stat,
    /** Index into the xattr-id table, undefined when none (or the image has no xattr table). */
    readonly xattrIndex: number | undefined,
    readonly dir?: DirectoryLayout,
    readonly file?: FileLayout,
    readonly target?: Uint8Array,
  ) {}
}

export function splitRef(ref: number): { block: number; offset: number } {
  return { block: Math.floor(ref / 65536), offset: ref % 65536 };
}

/**
 * Decodes the inode at `ref` (block position relative to inode_table_start << 16 | offset).
 * Layouts (offsets from the inode start, after the 16-byte header
 * `u16 type, u16 mode, u16 uid_idx, u16 gid_idx, u32 mtime, u32 inode_number`):
 *  1 dir:      u32 block_start, u32 nlink, u16 file_size, u16 block_offset, u32 parent
 *  8 ext dir:  u32 nlink, u32 file_size, u32 block_start, u32 parent, u16 index_count, u16 block_offset, u32 xattr, index...
 *  2 file:     u32 blocks_start, u32 fragment, u32 frag_offset, u32 file_size, u32[] block sizes
 *  9 ext file: u64 blocks_start, u64 file_size, u64 sparse, u32 nlink, u32 fragment, u32 frag_offset, u32 xattr, u32[] sizes
 *  3/10 symlink: u32 nlink, u32 target_size, target, (ext: u32 xattr)
 *  4,5/11,12 device: u32 nlink, u32 rdev, (ext: u32 xattr)
 *  6,7/13,14 fifo/socket: u32 nlink, (ext: u32 xattr)
 */
export async function readInode(ctx: ImageContext, ref: InodeRef): Promise<SquashfsInode> {
  const S = 'inode';
  if (!Number.isSafeInteger(ref) || ref < 0) throw corrupt(S, `bad inode reference ${ref}`);
  const { block, offset } = splitRef(ref);
  if (offset >= METADATA_BLOCK_SIZE) throw corrupt(S, `inode reference ${ref}: offset ${offset} beyond 8192`);
  const cur = MetadataCursor.at(ctx.meta, ctx.inodeRegion, block, offset);
  const where = ctx.inodeRegion.start + block;
  // readNow first: most inodes sit in a cached block (no await per field group).
  const h = cur.readNow(INODE_HEADER_SIZE) ?? (await cur.read(INODE_HEADER_SIZE));
  const rawType = u16(h, 0);
  if (rawType < 1 || rawType > 14) throw corrupt(S, `unknown inode type ${rawType} (ref ${ref})`, where);
  const extended = rawType > 7;
  const basic = extended ? rawType - 7 : rawType;
  const type = fileTypeOf(basic)!;
  const mode = S_IFMT_OF[type] | (u16(h, 2) & 0o7777);
  const uidIndex = u16(h, 4);
  const gidIndex = u16(h, 6);
  const mtime = u32(h, 8);
  const ino = u32(h, 12);
  if (ino === 0 || ino > ctx.sb.inodeCount) throw corrupt(S, `inode number ${ino} outside 1..${ctx.sb.inodeCount} (ref ${ref})`, where);
  const uid = ctx.idNow(uidIndex) ?? (await ctx.id(uidIndex));
  const gid = ctx.idNow(gidIndex) ?? (await ctx.id(gidIndex));

  let nlink = 1;
  let size = 0;
  let rdev = 0;
  let blocks = 0;
  let xattrRaw = NONE32;
  let dir: DirectoryLayout | undefined;
  let file: FileLayout | undefined;
  let target: Uint8Array | undefined;

  switch (type) {
    case 'directory': {
      if (!extended) {
        const b = cur.readNow(16) ?? (await cur.read(16));
        const blockStart = u32(b, 0);
        nlink = u32(b, 4);
        size = u16(b, 8);
        dir = checkDir(ctx, ref, where, blockStart, size, u16(b, 10), u32(b, 12), 0, cur);
      } else {
        const b = cur.readNow(24) ?? (await cur.read(24));
        nlink = u32(b, 0);
        size = u32(b, 4);
        const indexCount = u16(b, 16);
        xattrRaw = u32(b, 20);
        dir = checkDir(ctx, ref, where, u32(b, 8), size, u16(b, 18), u32(b, 12), indexCount, cur);
      }
      break;
    }
    case 'file': {
      let blocksStart: number;
      let fragment: number;
      let fragmentOffset: number;
      let sparse = 0;
      if (!extended) {
        const b = cur.readNow(16) ?? (await cur.read(16));
        blocksStart = u32(b, 0);
        fragment = u32(b, 4);
        fragmentOffset = u32(b, 8);
        size = u32(b, 12);
      } else {
        const b = cur.readNow(40) ?? (await cur.read(40));
        blocksStart = u64(b, 0);
        size = u64(b, 8);
        sparse = u64(b, 16);
        nlink = u32(b, 24);
        fragment = u32(b, 28);
        fragmentOffset = u32(b, 32);
        xattrRaw = u32(b, 36);
      }
      if (!Number.isSafeInteger(size)) throw corrupt(S, `file size beyond 2^53 (ref ${ref})`, where);
      if (blocksStart > ctx.sb.bytesUsed) throw corrupt(S, `file data start ${blocksStart} beyond bytes_used (ref ${ref})`, where);
      const bs = ctx.sb.blockSize;
      let fragmentIndex: number | undefined;
      if (fragment !== NONE32 && size % bs !== 0) {
        if (fragment >= ctx.sb.fragmentCount) throw corrupt(S, `fragment index ${fragment} out of range (${ctx.sb.fragmentCount} fragments, ref ${ref})`, where);
        if (fragmentOffset >= ctx.sb.blockSize) throw corrupt(S, `fragment offset ${fragmentOffset} beyond the block size (ref ${ref})`, where);
        fragmentIndex = fragment;
      }
      const blockCount = fragmentIndex === undefined ? Math.ceil(size / bs) : Math.floor(size / bs);
      // The block list (4 bytes per block) must fit in what the rest of the inode table can decode to.
      const maxListBytes = Math.ceil((ctx.inodeRegion.end - cur.block) / 3) * METADATA_BLOCK_SIZE;
      if (blockCount * 4 > maxListBytes) throw corrupt(S, `file of ${size} bytes needs a block list longer than the inode table (ref ${ref})`, where);
      file = { blocksStart, size, fragmentIndex, fragmentOffset, blockCount, listBlock: cur.block, listOffset: cur.offset };
      blocks = extended ? Math.max(0, Math.floor((size - sparse + 511) / 512)) : size === 0 ? 0 : Math.floor((size - 1) / 512) + 1;
      break;
    }
    case 'symlink': {
      const b = await cur.read(8);
      nlink = u32(b, 0);
      size = u32(b, 4);
      if (size > MAX_SYMLINK_TARGET) throw corrupt(S, `symlink target of ${size} bytes exceeds ${MAX_SYMLINK_TARGET} (ref ${ref})`, where);
      target = (await cur.read(size)).slice();
      if (extended) xattrRaw = u32(await cur.read(4), 0);
      break;
    }
    case 'block-device':
    case 'char-device': {
      const b = await cur.read(extended ? 12 : 8);
      nlink = u32(b, 0);
      rdev = u32(b, 4);
      if (extended) xattrRaw = u32(b, 8);
      break;
    }
    default: {
      const b = await cur.read(extended ? 8 : 4);
      nlink = u32(b, 0);
      if (extended) xattrRaw = u32(b, 4);
    }
  }

  let xattrIndex: number | undefined;
  if (xattrRaw !== NONE32 && ctx.xattrs !== undefined) {
    // As the kernel: xattr size adds ((size - 1) >> 9) + 1 blocks.
    const { size: xattrSize } = await ctx.xattrs.entry(xattrRaw);
    blocks += Math.floor((xattrSize - 1) / 512) + 1;
    xattrIndex = xattrRaw;
  }

  // Frozen: decoded inodes are cached and shared by every caller.
  const stat: Stat = Object.freeze({ ino, type, mode, uid, gid, size, nlink, mtime, rdev, blocks, blksize: ctx.sb.blockSize });
  return new SquashfsInode(ref, stat, xattrIndex, dir, file, target);
}

function checkDir(
  ctx: ImageContext,
  ref: number,
  where: number,
  blockStart: number,
  fileSize: number,
  blockOffset: number,
  parentIno: number,
  indexCount: number,
  cur: MetadataCursor,
): DirectoryLayout {
  const listingSize = fileSize > 3 ? fileSize - 3 : 0;
  if (listingSize > 0) {
    if (blockStart >= ctx.directoryRegion.end - ctx.directoryRegion.start) {
      throw corrupt('inode', `directory listing block ${blockStart} outside the directory table (ref ${ref})`, where);
    }
    if (blockOffset >= METADATA_BLOCK_SIZE) throw corrupt('inode', `directory block offset ${blockOffset} beyond 8192 (ref ${ref})`, where);
    // A listing decodes from at most (table bytes / 3) blocks of 8192 bytes.
    const maxListing = Math.ceil((ctx.directoryRegion.end - ctx.directoryRegion.start - blockStart) / 3) * METADATA_BLOCK_SIZE;
    if (listingSize > maxListing) throw corrupt('inode', `directory listing of ${listingSize} bytes larger than the directory table (ref ${ref})`, where);
  }
  return { blockStart, blockOffset, listingSize, parentIno, indexCount, indexBlock: cur.block, indexOffset: cur.offset };
}
