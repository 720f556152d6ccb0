/**
 * Where every on-disk structure of a (valid) SquashFS 4.0 image lives, found from the superblock:
 * superblock fields, each table's metadata blocks (header position and stored length), and the u64
 * index lists of the lookup tables. The mutator aims its damage with this map.
 */

export type FieldWidth = 2 | 4 | 8;

export interface SuperblockField {
  name: string;
  offset: number;
  width: FieldWidth;
}

/** Superblock layout (squashfs_fs.h), one place for the fuzzer. */
export const SUPERBLOCK_FIELDS: readonly SuperblockField[] = [
  { name: 'magic', offset: 0, width: 4 },
  { name: 'inode_count', offset: 4, width: 4 },
  { name: 'mod_time', offset: 8, width: 4 },
  { name: 'block_size', offset: 12, width: 4 },
  { name: 'fragment_count', offset: 16, width: 4 },
  { name: 'compressor', offset: 20, width: 2 },
  { name: 'block_log', offset: 22, width: 2 },
  { name: 'flags', offset: 24, width: 2 },
  { name: 'id_count', offset: 26, width: 2 },
  { name: 'version_major', offset: 28, width: 2 },
  { name: 'version_minor', offset: 30, width: 2 },
  { name: 'root_inode_ref', offset: 32, width: 8 },
  { name: 'bytes_used', offset: 40, width: 8 },
  { name: 'id_table_start', offset: 48, width: 8 },
  { name: 'xattr_id_table_start', offset: 56, width: 8 },
  { name: 'inode_table_start', offset: 64, width: 8 },
  { name: 'directory_table_start', offset: 72, width: 8 },
  { name: 'fragment_table_start', offset: 80, width: 8 },
  { name: 'export_table_start', offset: 88, width: 8 },
];

export const SUPERBLOCK_SIZE = 96;
const METADATA_BLOCK = 8192;
const FLAG_COMPRESSOR_OPTIONS = 0x0400;

export interface Area {
  /** e.g. "inode table", "id index", "xattr id header". */
  name: string;
  start: number;
  end: number;
}

export interface MetadataBlockAt {
  table: string;
  /** Absolute position of the u16 header. */
  pos: number;
  /** Stored payload length (header & 0x7fff). */
  length: number;
}

export interface IndexList {
  table: string;
  start: number;
  entries: number;
}

export interface ImageLayout {
  size: number;
  bytesUsed: number;
  areas: Area[];
  metadataBlocks: MetadataBlockAt[];
  indexLists: IndexList[];
}

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function u64(b: Uint8Array, o: number): number | undefined {
  const hi = u32(b, o + 4);
  if (hi === 0xffffffff && u32(b, o) === 0xffffffff) return undefined;
  return hi * 0x1_0000_0000 + u32(b, o);
}

/** Blocks chained from `start` up to `end` (header after header). */
function chain(b: Uint8Array, table: string, start: number, end: number): MetadataBlockAt[] {
  const out: MetadataBlockAt[] = [];
  let pos = start;
  while (pos + 2 <= end && out.length < 100_000) {
    const length = u16(b, pos) & 0x7fff;
    if (length === 0) break;
    out.push({ table, pos, length });
    pos += 2 + length;
  }
  return out;
}

/** Maps a pristine image. Throws on an image it cannot map (a base image must be valid). */
export function mapImage(b: Uint8Array): ImageLayout {
  const bytesUsed = u64(b, 40)!;
  const inodeStart = u64(b, 64)!;
  const dirStart = u64(b, 72)!;
  const idStart = u64(b, 48)!;
  const fragCount = u32(b, 16);
  const fragStart = fragCount > 0 ? u64(b, 80) : undefined;
  const exportStart = u64(b, 88);
  const xattrStart = u64(b, 56);
  const inodeCount = u32(b, 4);
  const idCount = u16(b, 26);

  const areas: Area[] = [{ name: 'superblock', start: 0, end: SUPERBLOCK_SIZE }];
  const metadataBlocks: MetadataBlockAt[] = [];
  const indexLists: IndexList[] = [];
  let dataStart = SUPERBLOCK_SIZE;
  if (u16(b, 24) & FLAG_COMPRESSOR_OPTIONS) {
    const len = u16(b, SUPERBLOCK_SIZE) & 0x7fff;
    areas.push({ name: 'compression options', start: SUPERBLOCK_SIZE, end: SUPERBLOCK_SIZE + 2 + len });
    dataStart += 2 + len;
  }
  if (inodeStart > dataStart) areas.push({ name: 'data', start: dataStart, end: inodeStart });

  // Lookup tables: index list -> block positions.
  const lookup = (table: string, listStart: number, count: number, entrySize: number): number[] => {
    const entries = Math.ceil((count * entrySize) / METADATA_BLOCK);
    indexLists.push({ table, start: listStart, entries });
    areas.push({ name: `${table} index`, start: listStart, end: listStart + entries * 8 });
    const blocks: number[] = [];
    for (let i = 0; i < entries; i++) blocks.push(u64(b, listStart + i * 8)!);
    for (const pos of blocks) {
      const length = u16(b, pos) & 0x7fff;
      metadataBlocks.push({ table, pos, length });
    }
    if (blocks.length > 0) areas.push({ name: `${table} blocks`, start: blocks[0]!, end: listStart });
    return blocks;
  };
  const fragBlocks = fragStart === undefined ? [] : lookup('fragment table', fragStart, fragCount, 16);
  const exportBlocks = exportStart === undefined ? [] : lookup('export table', exportStart, inodeCount, 8);
  const idBlocks = lookup('id table', idStart, idCount, 4);
  if (xattrStart !== undefined) {
    areas.push({ name: 'xattr id header', start: xattrStart, end: xattrStart + 16 });
    const kvStart = u64(b, xattrStart)!;
    const xattrBlocks = lookup('xattr id table', xattrStart + 16, u32(b, xattrStart + 8), 16);
    const kvEnd = xattrBlocks[0] ?? xattrStart;
    areas.push({ name: 'xattr key/value table', start: kvStart, end: kvEnd });
    metadataBlocks.push(...chain(b, 'xattr key/value table', kvStart, kvEnd));
  }
  const dirEnd = fragBlocks[0] ?? exportBlocks[0] ?? idBlocks[0] ?? bytesUsed;
  areas.push({ name: 'inode table', start: inodeStart, end: dirStart });
  areas.push({ name: 'directory table', start: dirStart, end: dirEnd });
  metadataBlocks.push(
    ...chain(b, 'inode table', inodeStart, dirStart),
    ...chain(b, 'directory table', dirStart, dirEnd),
  );
  return { size: b.length, bytesUsed, areas: areas.filter((a) => a.end > a.start), metadataBlocks, indexLists };
}
