import { corrupt, SquashfsError } from './errors.js';
import { compareBytes, s16, u16, u32 } from './bytes.js';
import { MetadataCursor } from './metadata.js';
import type { ImageContext } from './context.js';
import type { DirectoryLayout } from './inode.js';
import { METADATA_BLOCK_SIZE } from './superblock.js';

/** Header `u32 count-1, u32 inode_block, u32 base_inode_number`; at most 256 entries follow. */
const HEADER_SIZE = 12;
const MAX_RUN = 256;
/** Entry `u16 inode_offset, s16 inode_delta, u16 basic_type, u16 name_size-1`, then the name. */
const ENTRY_SIZE = 8;
/** Directory index entry `u32 listing_offset, u32 block_start, u32 name_size-1`, then the name. */
const INDEX_ENTRY_SIZE = 12;
export const MAX_NAME = 256;
/**
 * Most entries one listing may hold. Memory stays bounded whatever a listing claims (a hostile
 * directory table can decode to far more than it stores); real directories stay far below.
 */
export const MAX_DIRECTORY_ENTRIES = 1 << 20;

export interface RawDirEntry {
  name: Uint8Array;
  ref: number;
  ino: number;
  /** Basic type from the directory record (informational: the inode is authoritative). */
  type: number;
}

/** Called per entry; return true to stop the scan. */
type Visit = (e: RawDirEntry) => boolean;

const S = 'directory';

export function checkName(name: Uint8Array, where: number): void {
  const dot = 0x2e;
  if ((name.length === 1 && name[0] === dot) || (name.length === 2 && name[0] === dot && name[1] === dot)) {
    throw corrupt(S, `entry named "${name.length === 1 ? '.' : '..'}"`, where);
  }
  if (name.includes(0x2f) || name.includes(0)) throw corrupt(S, 'entry name contains "/" or NUL', where);
}

/**
 * Walks a listing from `cursor` (at listing byte `pos`) to its end, checking every header and
 * entry against the listing size, the inode table and the inode count.
 */
async function scan(ctx: ImageContext, dir: DirectoryLayout, cursor: MetadataCursor, pos: number, visit: Visit): Promise<void> {
  const end = dir.listingSize;
  const inodeTableSize = ctx.inodeRegion.end - ctx.inodeRegion.start;
  while (pos < end) {
    const where = cursor.block;
    if (end - pos < HEADER_SIZE) throw corrupt(S, `listing ends inside a header (${end - pos} bytes left)`, where);
    // readNow first: a listing's records nearly always sit in a cached block (no await per record).
    const h = cursor.readNow(HEADER_SIZE) ?? (await cursor.read(HEADER_SIZE));
    pos += HEADER_SIZE;
    const count = u32(h, 0) + 1;
    const inodeBlock = u32(h, 4);
    const base = u32(h, 8);
    if (count > MAX_RUN) throw corrupt(S, `header announces ${count} entries (max 256)`, where);
    if (inodeBlock >= inodeTableSize) throw corrupt(S, `header inode block ${inodeBlock} outside the inode table`, where);
    for (let i = 0; i < count; i++) {
      if (end - pos < ENTRY_SIZE) throw corrupt(S, 'listing ends inside an entry', cursor.block);
      const e = cursor.readNow(ENTRY_SIZE) ?? (await cursor.read(ENTRY_SIZE));
      const inodeOffset = u16(e, 0);
      const ino = base + s16(e, 2);
      const type = u16(e, 4);
      const nameSize = u16(e, 6) + 1;
      pos += ENTRY_SIZE;
      if (nameSize > MAX_NAME) throw corrupt(S, `entry name of ${nameSize} bytes (max 256)`, cursor.block);
      if (end - pos < nameSize) throw corrupt(S, 'entry name runs past the end of the listing', cursor.block);
      const name = cursor.readNow(nameSize) ?? (await cursor.read(nameSize));
      pos += nameSize;
      checkName(name, cursor.block);
      if (inodeOffset >= METADATA_BLOCK_SIZE) throw corrupt(S, `entry inode offset ${inodeOffset} beyond 8192`, cursor.block);
      if (ino < 1 || ino > ctx.sb.inodeCount) throw corrupt(S, `entry inode number ${ino} outside 1..${ctx.sb.inodeCount}`, cursor.block);
      if (type < 1 || type > 7) throw corrupt(S, `entry type ${type} is not a basic inode type`, cursor.block);
      if (visit({ name, ref: inodeBlock * 65536 + inodeOffset, ino, type })) return;
    }
  }
}

function listingCursor(ctx: ImageContext, dir: DirectoryLayout): MetadataCursor {
  return MetadataCursor.at(ctx.meta, ctx.directoryRegion, dir.blockStart, dir.blockOffset);
}

/**
 * Visits every entry of a directory in stored order (at most MAX_DIRECTORY_ENTRIES). An entry's
 * `name` is a view of a cached metadata block, valid only during the call: copy what is kept.
 */
export async function visitEntries(ctx: ImageContext, dir: DirectoryLayout, visit: (e: RawDirEntry) => void): Promise<void> {
  if (dir.listingSize === 0) return;
  let count = 0;
  await scan(ctx, dir, listingCursor(ctx, dir), 0, (e) => {
    if (++count > MAX_DIRECTORY_ENTRIES) throw corrupt(S, `listing holds more than ${MAX_DIRECTORY_ENTRIES} entries`);
    visit(e);
    return false;
  });
}

/** Every entry of a directory, in stored order. */
export async function readEntries(ctx: ImageContext, dir: DirectoryLayout): Promise<RawDirEntry[]> {
  const out: RawDirEntry[] = [];
  await visitEntries(ctx, dir, (e) => {
    out.push({ ...e, name: e.name.slice() });
  });
  return out;
}

/**
 * Finds `name` in a directory. Large (extended) directories jump via the directory index to the
 * last indexed header whose first name <= `name`, then scan; entries are sorted bytewise, so the
 * scan stops at the first greater name. A malformed index is ignored (it is only an accelerator).
 */
export async function findEntry(ctx: ImageContext, dir: DirectoryLayout, name: Uint8Array): Promise<RawDirEntry | undefined> {
  if (dir.listingSize === 0) return undefined;
  let start: { cursor: MetadataCursor; pos: number } | undefined;
  if (dir.indexCount > 0) {
    try {
      start = await seekIndex(ctx, dir, name);
    } catch (e) {
      if (!(e instanceof SquashfsError) || e.code !== 'ECORRUPT') throw e;
      start = undefined;
    }
  }
  const cursor = start?.cursor ?? listingCursor(ctx, dir);
  let found: RawDirEntry | undefined;
  await scan(ctx, dir, cursor, start?.pos ?? 0, (e) => {
    const c = compareBytes(e.name, name);
    if (c === 0) found = { ...e, name: e.name.slice() };
    return c >= 0;
  });
  return found;
}

async function seekIndex(ctx: ImageContext, dir: DirectoryLayout, name: Uint8Array): Promise<{ cursor: MetadataCursor; pos: number } | undefined> {
  const idx = new MetadataCursor(ctx.meta, ctx.inodeRegion, dir.indexBlock, dir.indexOffset);
  const tableSize = ctx.directoryRegion.end - ctx.directoryRegion.start;
  let best: { index: number; start: number } | undefined;
  let prevIndex = 0;
  let prevStart = dir.blockStart;
  let prevName: Uint8Array | undefined;
  for (let i = 0; i < dir.indexCount; i++) {
    const h = await idx.read(INDEX_ENTRY_SIZE);
    const index = u32(h, 0);
    const start = u32(h, 4);
    const size = u32(h, 8) + 1;
    if (size > MAX_NAME) throw corrupt('directory index', `name of ${size} bytes`);
    const entryName = await idx.read(size);
    // Index points must move forward inside the listing and the directory table, names ascending.
    if (index <= prevIndex || index >= dir.listingSize || start < prevStart || start >= tableSize) {
      throw corrupt('directory index', `entry ${i} (${index}, ${start}) out of order or range`);
    }
    if (prevName !== undefined && compareBytes(entryName, prevName) <= 0) throw corrupt('directory index', `entry ${i} names out of order`);
    if (compareBytes(entryName, name) > 0) break;
    best = { index, start };
    prevIndex = index;
    prevStart = start;
    prevName = entryName.slice();
  }
  if (best === undefined) return undefined;
  const offset = (best.index + dir.blockOffset) % METADATA_BLOCK_SIZE;
  return { cursor: MetadataCursor.at(ctx.meta, ctx.directoryRegion, best.start, offset), pos: best.index };
}
